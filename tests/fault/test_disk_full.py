"""Fault: the data disk fills up during ingestion. ``docfactory serve`` (embedded default: SQLite
and the vector store in the data directory) runs on a small tmpfs; a filler file leaves little
room; uploads go on until the disk is full:

* the refusal is clear: RESOURCE_EXHAUSTED with ErrorInfo reason ``DISK_FULL`` (not INTERNAL,
  and not the SIGBUS that killed the server when the vector engine's memory-mapped segments
  ran out of disk: the embedded store keeps ``DOCFACTORY_VECTOR_MIN_FREE_MB`` free);
* nothing is half-stored: the documents indexed before are intact and searchable, the failed
  upload left no document, ``PRAGMA integrity_check`` is ``ok``, the server stays SERVING;
* once space is freed (the filler deleted), the same upload succeeds, exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.conftest import write_keys
from tests.fault.support import Serve, free_port, serving
from tests.helpers import error_reason, md, search, upload

TMPFS_MB = 64


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mnt)],
        check=True,
        timeout=30,
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path: Path, leave: int) -> None:
    """Write a filler file that leaves about ``leave`` bytes free."""
    block = b"\0" * (1 << 20)
    with path.open("wb") as f:
        while _free_bytes(path.parent) - len(block) > leave:
            f.write(block)
            f.flush()
        rest = max(0, _free_bytes(path.parent) - leave)
        f.write(b"\0" * rest)


def _note(i: int) -> bytes:
    lines = [
        f"Dossier {i}, clause {j} : le prestataire conserve les pièces justificatives "
        f"pendant dix ans et les remet au client sur simple demande (référence {i}-{j})."
        for j in range(400)
    ]
    return ("\n".join(lines) + "\n").encode()


async def _documents(ch: grpc.aio.Channel) -> list[ing_pb.Document]:
    resp = await ing_grpc.IngestionServiceStub(ch).ListDocuments(
        ing_pb.ListDocumentsRequest(page_size=1000), metadata=md("key-acme"), timeout=30
    )
    return list(resp.documents)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_disk_full_during_ingestion_then_resumes(
    tmp_path: Path, small_disk: Path, procs: list[Serve]
) -> None:
    keys = write_keys(tmp_path / "keys.yaml")
    data = small_disk / "data"
    server = Serve(
        data,
        free_port(),
        tmp_path / "serve.log",
        {"DOCFACTORY_KEYS_FILE": str(keys), "DOCFACTORY_VECTOR_MIN_FREE_MB": "4"},
    )
    procs.append(server)
    await server.ready()
    async with grpc.aio.insecure_channel(server.address) as ch:
        first = tmp_path / "garantie.txt"
        first.write_text("La garantie décennale couvre les vices de construction pendant dix ans.")
        kept = await upload(ch, first)
        filler = small_disk / "filler"
        _fill(filler, leave=6 << 20)

        refused: grpc.aio.AioRpcError | None = None
        stored: list[str] = [kept.document.document_id]
        for i in range(60):
            try:
                r = await upload(ch, tmp_path / f"dossier-{i}.txt", data=_note(i))
            except grpc.aio.AioRpcError as exc:
                refused, failed_at = exc, i
                break
            stored.append(r.document.document_id)
        assert refused is not None, f"the disk never filled ({_free_bytes(small_disk)} B free)"
        print(f"disk full after {len(stored)} documents: {refused.code()} {error_reason(refused)}")
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
        assert error_reason(refused) == "DISK_FULL"

        # Intact: the server serves, the earlier documents are there and searchable, the
        # refused one is at most recorded FAILED with the reason (no point of it indexed),
        # the database is consistent.
        assert await serving(ch)
        docs = {d.document_id: d for d in await _documents(ch)}
        assert set(stored) <= set(docs)
        assert all(docs[d].state == ing_pb.DOCUMENT_STATE_INDEXED for d in stored)
        refused_docs = [docs[d] for d in set(docs) - set(stored)]
        assert len(refused_docs) <= 1, refused_docs
        for d in refused_docs:
            assert d.state == ing_pb.DOCUMENT_STATE_FAILED and d.error_reason == "DISK_FULL", d
            assert d.chunk_count == 0
        hits = (await search(ch, "garantie décennale vices de construction")).results
        assert hits and hits[0].citation.document_id == kept.document.document_id
        with sqlite3.connect(f"file:{data / 'docfactory.db'}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        # Space returns: the same upload goes through, once.
        filler.unlink()
        retry = await upload(ch, tmp_path / f"dossier-{failed_at}.txt", data=_note(failed_at))
        assert retry.document.chunk_count > 0 and not retry.unchanged
        again = await upload(ch, tmp_path / f"dossier-{failed_at}.txt", data=_note(failed_at))
        assert again.unchanged and again.document.document_id == retry.document.document_id
        assert {d.document_id for d in refused_docs} <= {retry.document.document_id}
        after = await _documents(ch)
        assert sorted(d.document_id for d in after) == sorted([*stored, retry.document.document_id])
        assert all(d.state == ing_pb.DOCUMENT_STATE_INDEXED for d in after)
        hits = (await search(ch, f"pièces justificatives référence {failed_at}-7")).results
        assert hits and retry.document.document_id in {h.citation.document_id for h in hits}
        assert await serving(ch)
    assert server.proc.poll() is None


def test_full_disk_errors_map_to_disk_full(small_disk: Path, tmp_path: Path) -> None:
    """The errors a full disk really raises (ENOSPC from a write, SQLITE_FULL from SQLite, also
    wrapped by SQLAlchemy) map to RESOURCE_EXHAUSTED DISK_FULL; a refused PostgreSQL
    connection maps to UNAVAILABLE DATABASE_UNAVAILABLE."""
    import sqlalchemy as sa

    from docfactory.core.errors import infrastructure_error

    with pytest.raises(OSError) as enospc:
        _fill(small_disk / "filler", leave=0)
        (small_disk / "more").write_bytes(b"x" * (1 << 20))
    mapped = infrastructure_error(enospc.value)
    assert mapped is not None and mapped.reason == "DISK_FULL"
    assert mapped.code == grpc.StatusCode.RESOURCE_EXHAUSTED

    db = sqlite3.connect(tmp_path / "small.db")
    db.execute("PRAGMA max_page_count=8")
    db.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(64):
            db.execute("INSERT INTO t VALUES (zeroblob(4096))")
    db.close()
    mapped = infrastructure_error(full.value)
    assert mapped is not None and mapped.reason == "DISK_FULL", full.value

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'small2.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count=8")
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
    with pytest.raises(sa.exc.OperationalError) as wrapped, engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count=8")
        for _ in range(64):
            conn.exec_driver_sql("INSERT INTO t VALUES (zeroblob(4096))")
    engine.dispose()
    mapped = infrastructure_error(wrapped.value)
    assert mapped is not None and mapped.reason == "DISK_FULL", wrapped.value

    refused = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(sa.exc.OperationalError) as down:
        refused.connect()
    mapped = infrastructure_error(down.value)
    assert mapped is not None and mapped.reason == "DATABASE_UNAVAILABLE"
    assert mapped.code == grpc.StatusCode.UNAVAILABLE
    assert infrastructure_error(ValueError("no")) is None
    # a bug stays a bug (INTERNAL), not a retryable "database unavailable"
    with pytest.raises(sa.exc.OperationalError) as bug, engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    engine.dispose()
    assert infrastructure_error(bug.value) is None

    # The request metrics count them under the code the client gets, not INTERNAL.
    from docfactory.core.interceptors import _code_of

    assert _code_of(enospc.value) == "RESOURCE_EXHAUSTED"
    assert _code_of(down.value) == "UNAVAILABLE"
    assert _code_of(bug.value) == _code_of(ValueError("no")) == "INTERNAL"
