"""Issue 12: every bypass found when docfactory was attacked as a hostile tenant, reproduced
against a real server (two tenants, roles, a PUBLIC-ceiling use case) and refused with its code
and reason; nothing stored changes; every refusal of an authenticated caller is audited and
the audit chain still verifies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import struct_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from docfactory.app import RunningServer, start_server
from docfactory.core.db import make_engine
from docfactory.core.vectorstore import point_id
from docfactory.embedding.v1 import embedding_service_pb2 as emb_pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
from docfactory.governance.audit import AuditLog
from docfactory.index.v1 import index_service_pb2 as idx_pb
from docfactory.index.v1 import index_service_pb2_grpc as idx_grpc
from docfactory.ingestion.staging import prepare_staging_dir
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as jobs_pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as jobs_grpc
from docfactory.measurement.v1 import measurement_service_pb2 as meas_pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as meas_grpc
from tests.helpers import search, upload
from tests.security._env import SERVICE_MD, Env, details, make_env, md, raw_unary

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "Le plan de restructuration confidentiel prévoit la fermeture de trois agences."
PUBLIC = "Les horaires d'ouverture des agences sont affichés à l'entrée de chaque agence."


class Ctx:
    def __init__(self, env: Env, server: RunningServer, channel: grpc.aio.Channel) -> None:
        self.env = env
        self.server = server
        self.ch = channel
        self.index: grpc.aio.Channel | None = None
        self.docs: dict[str, ing_pb.Document] = {}

    @property
    def audit(self) -> AuditLog:
        url = self.env.settings.resolved_database_url
        return AuditLog(make_engine(url), create_tables=False)

    def refusals(self, outcome: str) -> list[Any]:
        return [
            r
            for r in self.audit.records()
            if r.action in ("DENIED", "REJECTED") and r.outcome == outcome
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ctx]:
    env = make_env(tmp_path_factory.mktemp("security"))
    running = await start_server(env.settings, port=0)
    channel = grpc.aio.insecure_channel(running.address)
    c = Ctx(env, running, channel)
    assert running.index_address
    c.index = grpc.aio.insecure_channel(running.index_address)
    src = env.root / "src"
    src.mkdir()
    (src / "plan.txt").write_text(SECRET)
    (src / "horaires.txt").write_text(PUBLIC)
    c.docs["secret"] = (
        await upload(
            channel, src / "plan.txt", key="ing-nord", collection="direction", classification=3
        )
    ).document
    c.docs["public"] = (
        await upload(
            channel, src / "horaires.txt", key="ing-nord", collection="accueil", classification=1
        )
    ).document
    try:
        yield c
    finally:
        await c.index.close()
        await channel.close()
        await running.stop(0.5)


async def _expect(
    coro: Any, code: grpc.StatusCode, reason: str
) -> tuple[grpc.aio.AioRpcError, list[tuple[str, str]]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    got_reason, violations = details(err.value)
    assert (err.value.code(), got_reason) == (code, reason), err.value.details()
    return err.value, violations


async def _nord_state(c: Ctx) -> tuple[list[tuple[str, int, int]], int]:
    """Nord's documents (id, version, chunks) and how many hits its secret query finds."""
    stub = ing_grpc.IngestionServiceStub(c.ch)
    docs = await stub.ListDocuments(
        ing_pb.ListDocumentsRequest(page_size=100), metadata=md("read-nord")
    )
    hits = await search(
        c.ch, "plan de restructuration confidentiel", key="read-nord", use_case="uc-conf"
    )
    return (
        sorted((d.document_id, d.version, d.chunk_count) for d in docs.documents),
        sum(1 for h in hits.results if h.citation.document_id == c.docs["secret"].document_id),
    )


# 1. IndexService ------------------------------------------------------------------------


async def test_index_service_is_not_on_the_public_port(ctx: Ctx) -> None:
    stub = idx_grpc.IndexServiceStub(ctx.ch)
    await _expect_unimplemented(
        stub.QueryPoints(idx_pb.QueryPointsRequest(), metadata=md("read-sud"))
    )
    refl = reflection_pb2_grpc.ServerReflectionStub(ctx.ch)
    names: list[str] = []
    async for resp in refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    ):
        names += [s.name for s in resp.list_services_response.service]
    assert "docfactory.answering.v1.AnsweringService" in names
    assert "docfactory.index.v1.IndexService" not in names
    # The internal listener has no reflection and refuses end-user keys alone.
    assert ctx.index is not None
    refl_int = reflection_pb2_grpc.ServerReflectionStub(ctx.index)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in refl_int.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=SERVICE_MD
        ):
            pass
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await _expect(
        idx_grpc.IndexServiceStub(ctx.index).CountPoints(
            idx_pb.CountPointsRequest(), metadata=md("ing-nord")
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "SERVICE_CREDENTIALS_REQUIRED",
    )


async def _expect_unimplemented(coro: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_index_reads_run_under_the_use_case_ceiling(ctx: Ctx) -> None:
    assert ctx.index is not None
    stub = idx_grpc.IndexServiceStub(ctx.index)
    meta = (*md("read-nord"), *SERVICE_MD)
    before = len(ctx.refusals("USE_CASE_REQUIRED"))
    await _expect(
        stub.QueryPoints(idx_pb.QueryPointsRequest(mode="sparse", limit=10), metadata=meta),
        grpc.StatusCode.INVALID_ARGUMENT,
        "USE_CASE_REQUIRED",
    )
    assert len(ctx.refusals("USE_CASE_REQUIRED")) == before + 1
    # Under the PUBLIC use case the CONFIDENTIAL chunk never comes back, whatever the scope asks.
    resp = await stub.QueryPoints(
        idx_pb.QueryPointsRequest(
            dense=[0.1] * 512, limit=50, mode="dense", scope=idx_pb.Scope(max_classification=4)
        ),
        metadata=(*meta, ("x-docfactory-use-case", "uc-public")),
    )
    texts = [dict(p.payload).get("text", "") for p in resp.points]
    assert texts and all("restructuration" not in t for t in texts)
    assert all(int(dict(p.payload)["classification"]) <= 1 for p in resp.points)


async def test_index_writes_cannot_touch_another_tenant(ctx: Ctx) -> None:
    assert ctx.index is not None
    stub = idx_grpc.IndexServiceStub(ctx.index)
    before = await _nord_state(ctx)
    secret = ctx.docs["secret"]
    victim_id = point_id(secret.document_id, secret.version, 0)
    payload = struct_pb2.Struct()
    payload.update(
        {
            "tenant": "nord",
            "collection": "direction",
            "source_uri": secret.source_uri,
            "document_id": secret.document_id,
            "document_version": secret.version,
            "chunk_index": 0,
            "classification": 3,
            "text": "pwned",
        }
    )
    point = idx_pb.Point(id=victim_id, dense=[0.0] * 512, payload=payload)
    # Tenant sud's ingester naming nord's tenant: refused.
    await _expect(
        stub.UpsertPoints(
            idx_pb.UpsertPointsRequest(points=[point], dimension=512),
            metadata=(*md("ing-sud"), *SERVICE_MD),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "TENANT_MISMATCH",
    )
    # Without a tenant in the payload it is forced to sud: nord's ids do not derive from it.
    del payload["tenant"]
    point = idx_pb.Point(id=victim_id, dense=[0.0] * 512, payload=payload)
    await _expect(
        stub.UpsertPoints(
            idx_pb.UpsertPointsRequest(points=[point], dimension=512),
            metadata=(*md("ing-sud"), *SERVICE_MD),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "POINT_NOT_OWNED",
    )
    # Readers (no ingester role) write nothing, in their own tenant either.
    for key in ("read-sud", "read-nord"):
        await _expect(
            stub.DeletePoints(
                idx_pb.DeletePointsRequest(document_id=secret.document_id),
                metadata=(*md(key), *SERVICE_MD),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "INGESTER_ROLE_REQUIRED",
        )
    # Sud's ingester deleting nord's document id deletes nothing (scoped to sud).
    resp = await stub.DeletePoints(
        idx_pb.DeletePointsRequest(document_id=secret.document_id),
        metadata=(*md("ing-sud"), *SERVICE_MD),
    )
    assert resp.deleted == 0
    assert await _nord_state(ctx) == before
    assert before[1] >= 1
    for outcome in ("TENANT_MISMATCH", "POINT_NOT_OWNED", "INGESTER_ROLE_REQUIRED"):
        assert ctx.refusals(outcome), outcome
    assert [r for r in ctx.audit.records() if r.action == "INDEX"], "index calls are audited"


# 2. Background uploads are not a source for another tenant's jobs ---------------------


async def test_ingest_prefix_reads_only_granted_sources(ctx: Ctx) -> None:
    stub = jobs_grpc.JobsServiceStub(ctx.ch)
    uploads = ctx.env.settings.jobs.upload_bucket
    cases = [
        (uploads, "nord/", "SOURCE_NOT_ALLOWED"),
        (uploads, "", "SOURCE_NOT_ALLOWED"),
        ("nord-docs", "", "SOURCE_NOT_GRANTED"),
        ("sud-docs", "", "SOURCE_NOT_GRANTED"),  # sud is granted only sud-docs/in/
    ]
    for bucket, prefix, reason in cases:
        await _expect(
            stub.IngestPrefix(
                jobs_pb.IngestPrefixRequest(bucket=bucket, prefix=prefix), metadata=md("ing-sud")
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            reason,
        )
    jobs = await stub.ListJobs(jobs_pb.ListJobsRequest(), metadata=md("ing-sud"))
    assert list(jobs.jobs) == []
    assert len(ctx.refusals("SOURCE_NOT_GRANTED")) >= 2
    assert len(ctx.refusals("SOURCE_NOT_ALLOWED")) >= 2
    # What the policy grants is accepted.
    ok = await stub.IngestPrefix(
        jobs_pb.IngestPrefixRequest(bucket="sud-docs", prefix="in/2026/"), metadata=md("ing-sud")
    )
    assert ok.job.bucket == "sud-docs"


# 3. IngestPath -------------------------------------------------------------------------


async def test_ingest_path_only_under_roots_for_ingesters(ctx: Ctx, tmp_path: Path) -> None:
    stub = ing_grpc.IngestionServiceStub(ctx.ch)
    allowed = ctx.env.allowed
    (allowed / "note.txt").write_text("Note de service : congés d'été.")
    (allowed / "passwd-link.txt").symlink_to("/etc/passwd")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "x.txt").write_text("hors racine")
    (allowed / "escape").symlink_to(outside_dir)
    before = await _nord_state(ctx)

    async def ingest(paths: list[str], key: str = "ing-nord") -> Any:
        return [
            r
            async for r in stub.IngestPath(
                ing_pb.IngestPathRequest(paths=paths, collection="paths"), metadata=md(key)
            )
        ]

    for paths in (
        ["/etc/passwd"],
        [str(Path.home() / ".bashrc")],
        [str(allowed / ".." / ".." / "policy.yaml")],
        [str(allowed / "passwd-link.txt")],
        [str(allowed / "escape" / "x.txt")],
        [str(allowed / "escape")],
        [str(allowed)],  # the folder holds a link that escapes
    ):
        err, _ = await _expect(ingest(paths), grpc.StatusCode.PERMISSION_DENIED, "PATH_NOT_ALLOWED")
        # Short, and never the content nor the target of a link.
        message = err.details() or ""
        assert len(message) < 300 and "root:" not in message
        if "link" in paths[0]:
            assert "/etc/passwd" not in message
    await _expect(
        ingest([str(allowed / "note.txt")], key="read-nord"),
        grpc.StatusCode.PERMISSION_DENIED,
        "INGESTER_ROLE_REQUIRED",
    )
    assert await _nord_state(ctx) == before
    assert len(ctx.refusals("PATH_NOT_ALLOWED")) >= 7
    # Inside the root, by an ingester: indexed.
    rows = await ingest([str(allowed / "note.txt")])
    assert rows[-1].document.state == ing_pb.DOCUMENT_STATE_INDEXED


# 4. One Embed call cannot stall every search -----------------------------------------


async def test_embed_sizes_are_capped_before_any_work(ctx: Ctx) -> None:
    stub = emb_grpc.EmbeddingServiceStub(ctx.ch)
    _err, violations = await _expect(
        stub.Embed(
            emb_pb.EmbedRequest(texts=["a" * 1_000_000], input_type=emb_pb.INPUT_TYPE_QUERY),
            metadata=md("read-sud"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    )
    assert violations and violations[0][0] == "texts[0]"
    await _expect(
        stub.Embed(
            emb_pb.EmbedRequest(texts=["b" * 10_000] * 20, input_type=emb_pb.INPUT_TYPE_PASSAGE),
            metadata=md("read-sud"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    )
    await _expect(
        stub.Embed(
            emb_pb.EmbedRequest(texts=["c"] * 513, input_type=emb_pb.INPUT_TYPE_PASSAGE),
            metadata=md("read-sud"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ITEMS",
    )


# 5. Errors that used to escape as INTERNAL / UNKNOWN -------------------------------------


async def test_malformed_values_are_invalid_argument(ctx: Ctx) -> None:
    import base64
    import json

    ing = ing_grpc.IngestionServiceStub(ctx.ch)
    forged = base64.urlsafe_b64encode(json.dumps({"o": 10**30, "f": "|"}).encode()).decode()
    await _expect(
        ing.ListDocuments(ing_pb.ListDocumentsRequest(page_token=forged), metadata=md("read-sud")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await _expect(
        ing.ListDocuments(ing_pb.ListDocumentsRequest(state=99), metadata=md("read-sud")),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_ENUM_VALUE",
    )
    meas = meas_grpc.MeasurementServiceStub(ctx.ch)
    await _expect(
        meas.SubmitFeedback(
            meas_pb.SubmitFeedbackRequest(answer_audit_seq=2**63), metadata=md("read-sud")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_OUT_OF_RANGE",
    )
    await _expect(
        meas.SubmitFeedback(
            meas_pb.SubmitFeedbackRequest(answer_audit_seq=1, time_saved_minutes=float("nan")),
            metadata=md("read-sud"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_OUT_OF_RANGE",
    )
    emb = emb_grpc.EmbeddingServiceStub(ctx.ch)
    await _expect(
        emb.Embed(emb_pb.EmbedRequest(texts=["x"], input_type=99), metadata=md("read-sud")),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_ENUM_VALUE",
    )
    assert ctx.index is not None
    await _expect(
        idx_grpc.IndexServiceStub(ctx.index).ListPointIds(
            idx_pb.ListPointIdsRequest(page_token="not-a-token"),
            metadata=(*md("ing-sud"), *SERVICE_MD),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    # Invalid UTF-8 in a string field (SearchRequest.query = field 1): decoded by the server.
    _err, _ = await _expect(
        raw_unary(
            ctx.ch,
            "/docfactory.answering.v1.AnsweringService/Search",
            b"\x0a\x03\xff\xfe\xfd",
            md("read-sud"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
    )
    assert ctx.refusals("UNKNOWN_ENUM_VALUE") and ctx.refusals("MALFORMED_REQUEST")


# 6. Inputs are normalised, never stored as given ----------------------------------------


async def test_uploaded_names_and_sources_are_normalised(ctx: Ctx, tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    f.write_text("Procédure d'accueil des nouveaux arrivants en agence.")
    doc = (await upload(ctx.ch, f, key="ing-sud", filename="../../etc/pass\x00wd.txt")).document
    assert doc.filename == "passwd.txt"
    assert doc.source_uri == f"upload://default/{doc.filename}"
    long_name = "x" * 900 + ".txt"
    doc2 = (await upload(ctx.ch, f, key="ing-sud", filename=long_name)).document
    assert len(doc2.filename) == 255 and doc2.filename.endswith(".txt")
    await _expect(
        upload(ctx.ch, f, key="ing-sud", filename="y" * 10_000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    )
    stub = ing_grpc.IngestionServiceStub(ctx.ch)

    async def with_source(uri: str) -> Any:
        async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
            yield ing_pb.UploadDocumentRequest(
                metadata=ing_pb.UploadMetadata(filename="shadow.txt", source_uri=uri)
            )
            yield ing_pb.UploadDocumentRequest(data=b"contenu")

        return await stub.UploadDocument(reqs(), metadata=md("ing-sud"))

    await _expect(
        with_source("file:///etc/shadow"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SOURCE_URI_NOT_ALLOWED",
    )
    await _expect(
        with_source("no scheme at all"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SOURCE_URI"
    )
    # A long collection name: the error is short and echoes only a prefix.
    err, _ = await _expect(
        upload(ctx.ch, f, key="ing-sud", collection="c" * 100 + "/"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_COLLECTION",
    )
    assert len(err.details() or "") < 300
    err, _ = await _expect(
        upload(ctx.ch, f, key="ing-sud", collection="c" * 10_000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_TOO_LONG",
    )
    assert len(err.details() or "") < 300
    # A broken file: the reason is specific, the message carries no server path.
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4\n" + os.urandom(4000))
    resp_err: Any = None
    try:
        resp = await upload(ctx.ch, bad, key="ing-sud")
        message = resp.document.error_message
    except grpc.aio.AioRpcError as exc:
        resp_err = exc
        message = exc.details() or ""
    data_dir = str(ctx.env.settings.data_dir)
    assert "/tmp" not in message and data_dir not in message and "staging" not in message
    assert resp_err is None or resp_err.code() != grpc.StatusCode.INTERNAL


# 7. Leftovers and exposure -------------------------------------------------------------


async def test_staged_uploads_are_private_and_cleaned(ctx: Ctx, tmp_path: Path) -> None:
    staging = ctx.env.settings.data_dir / "staging"
    assert staging.is_dir() and (staging.stat().st_mode & 0o777) == 0o700
    assert list(staging.iterdir()) == []  # every upload above removed its staged copy
    # A process killed with -9 leaves its staged upload: the next start removes it.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = staging / f"upload-{dead.pid}-abc123"
    orphan.write_bytes(b"copie d'un document")
    mine = staging / f"upload-{os.getpid()}-inflight"
    mine.write_bytes(b"upload en cours")
    prepare_staging_dir(staging)
    assert not orphan.exists() and mine.exists()
    mine.unlink()


async def test_metrics_listen_on_loopback_only(ctx: Ctx) -> None:
    port = ctx.server.metrics_port
    assert port
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    others = {
        info[4][0]
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        if not str(info[4][0]).startswith("127.")
    }
    for ip in others:
        with pytest.raises(OSError), socket.create_connection((ip, port), timeout=2):
            pass


async def test_zz_audit_chain_still_verifies(ctx: Ctx) -> None:
    report = ctx.audit.verify()
    assert report.ok, report
