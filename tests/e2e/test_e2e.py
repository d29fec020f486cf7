"""End to end over real gRPC: upload real DOCX, PDF, HTML and Markdown files, ask questions
whose answers sit in known files, check the top citation, delete and check it is gone.

Runs in all-in-one mode (one grpc.aio server) and in split mode (one process per service).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.conftest import ROOT, write_keys
from tests.helpers import answer, md, search, upload

QUESTIONS = [
    # (question, key of the file that holds the answer)
    ("Comment réunir le CSE pendant l'état d'urgence sanitaire ?", "pdf"),
    ("Where do good new ideas come from, according to the essay?", "html"),
    ("Qui doit réparer le dommage causé à autrui par sa faute ?", "md"),
    ("Je souhaite demander un rendez-vous pour discuter d'une rupture conventionnelle", "docx"),
]


async def _scenario(channel: grpc.aio.Channel, corpus: dict[str, Path]) -> None:
    docs = {}
    for key, path in corpus.items():
        resp = await upload(channel, path, collection="e2e")
        assert resp.document.state == ing_pb.DOCUMENT_STATE_INDEXED, resp.document
        assert resp.document.chunk_count > 0
        docs[key] = resp.document
    assert docs["pdf"].page_count >= 1

    for question, expected in QUESTIONS:
        res = await search(channel, question, collections=["e2e"], top_k=3)
        assert res.results, question
        top = res.results[0].citation
        assert top.document_id == docs[expected].document_id, (question, top.document_name)
        text, cits, summary = await answer(channel, question, collections=["e2e"], top_k=3)
        assert text.strip()
        assert cits and cits[0].document_id == docs[expected].document_id, question
        assert cits[0].quote
        assert summary.total_ms > 0 and summary.retrieval_ms > 0
    # A question the documents do not answer: the answer says so, with nothing cited.
    text, cits, summary = await answer(
        channel, "Quelle est la capitale de la Mongolie ?", collections=["e2e"], top_k=3
    )
    assert summary.insufficient_context and not cits, (text, cits)
    # PDF citations carry their page
    res = await search(channel, QUESTIONS[0][0], collections=["e2e"], top_k=1)
    assert list(res.results[0].citation.page_numbers) == [1]

    # delete one document: it disappears from every result
    stub = ing_grpc.IngestionServiceStub(channel)
    deleted = await stub.DeleteDocument(
        ing_pb.DeleteDocumentRequest(name=docs["md"].name), metadata=md("key-acme")
    )
    assert deleted.deleted_chunks == docs["md"].chunk_count
    for question, _ in QUESTIONS:
        res = await search(channel, question, collections=["e2e"], top_k=50)
        assert all(r.citation.document_id != docs["md"].document_id for r in res.results)
    _, cits, _ = await answer(channel, QUESTIONS[2][0], collections=["e2e"], top_k=5)
    assert all(c.document_id != docs["md"].document_id for c in cits)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDocument(
            ing_pb.GetDocumentRequest(name=docs["md"].name), metadata=md("key-acme")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_e2e_all_in_one(channel: grpc.aio.Channel, corpus: dict[str, Path]) -> None:
    await _scenario(channel, corpus)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def split_cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Four processes, one per service, wired by address; the answering process owns the
    embedded vector index and serves it to ingestion through IndexService."""
    keys = write_keys(tmp_path / "keys.yaml")
    ports = {s: _free_port() for s in ("ingestion", "chunking", "embedding", "answering")}
    addr = {s: f"127.0.0.1:{p}" for s, p in ports.items()}
    env_base = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "services"),
        "DOCFACTORY_DATA_DIR": str(tmp_path / "data"),
        "DOCFACTORY_KEYS_FILE": str(keys),
        "DOCFACTORY_HOST": "127.0.0.1",
        "DOCFACTORY_INGESTION_ADDRESS": addr["ingestion"],
        "DOCFACTORY_CHUNKING_ADDRESS": addr["chunking"],
        "DOCFACTORY_EMBEDDING_ADDRESS": addr["embedding"],
        "DOCFACTORY_ANSWERING_ADDRESS": addr["answering"],
    }
    # The index owner serves IndexService on an internal listener only (service key).
    index_addr = f"127.0.0.1:{_free_port()}"
    env_base["DOCFACTORY_SERVICE_KEY"] = "e2e-service-key-0123456789"
    procs = []
    try:
        for svc, port in ports.items():
            env = {**env_base, "DOCFACTORY_PORT": str(port)}
            if svc == "answering":
                env["DOCFACTORY_INDEX_LISTEN"] = index_addr
            if svc == "ingestion":
                env["DOCFACTORY_INDEX_ADDRESS"] = index_addr
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"docfactory.{svc}"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp_path / f"{svc}.log", "wb"),  # noqa: SIM115
                )
            )
        deadline = time.monotonic() + 120
        for svc, a in addr.items():
            while True:
                try:
                    with grpc.insecure_channel(a) as ch:
                        r = health_pb2_grpc.HealthStub(ch).Check(
                            health_pb2.HealthCheckRequest(service=""), timeout=2
                        )
                        if r.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    logs = (tmp_path / f"{svc}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{svc} did not start:\n{logs}")
                time.sleep(0.3)
        yield addr
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.slow
async def test_e2e_split_mode(split_cluster: dict[str, str], corpus: dict[str, Path]) -> None:
    # Each RPC goes to the process that owns the service; they talk to each other by stub.
    ing = grpc.aio.insecure_channel(split_cluster["ingestion"])
    ans = grpc.aio.insecure_channel(split_cluster["answering"])
    try:
        await _scenario(_RoutingChannel(ing, ans), corpus)  # type: ignore[arg-type]
    finally:
        await ing.close()
        await ans.close()


class _RoutingChannel:
    """Sends Ingestion RPCs to the ingestion process and Answering RPCs to answering."""

    def __init__(self, ingestion: grpc.aio.Channel, answering: grpc.aio.Channel) -> None:
        self._ing = ingestion
        self._ans = answering

    def _pick(self, method: str) -> grpc.aio.Channel:
        return self._ing if "IngestionService" in method else self._ans

    def unary_unary(self, method: str, *a: object, **k: object) -> object:
        return self._pick(method).unary_unary(method, *a, **k)

    def unary_stream(self, method: str, *a: object, **k: object) -> object:
        return self._pick(method).unary_stream(method, *a, **k)

    def stream_unary(self, method: str, *a: object, **k: object) -> object:
        return self._pick(method).stream_unary(method, *a, **k)

    def stream_stream(self, method: str, *a: object, **k: object) -> object:
        return self._pick(method).stream_stream(method, *a, **k)
