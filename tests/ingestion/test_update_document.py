"""UpdateDocument over a real server (AIP-134 field mask): classification applied to the
vectors at once (a PUBLIC use case sees the document only after it is declassified; same points,
no re-embedding), metadata replaced, audited; bad masks, immutable fields, other tenants and
readers refused with their reasons, nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from docfactory.app import RunningServer, start_server
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from tests.helpers import error_reason, search, upload
from tests.security._env import Env, make_env, md


@pytest.fixture
async def env_server(tmp_path: Path) -> AsyncIterator[tuple[Env, RunningServer]]:
    env = make_env(tmp_path, index_listen="", metrics_port=None)
    running = await start_server(env.settings, port=0)
    try:
        yield env, running
    finally:
        await running.stop(0.5)


def _req(name: str, paths: list[str], **fields: object) -> pb.UpdateDocumentRequest:
    return pb.UpdateDocumentRequest(
        document=pb.Document(name=name, **fields),  # type: ignore[arg-type]
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


async def test_update_document(env_server: tuple[Env, RunningServer], tmp_path: Path) -> None:
    env, running = env_server
    f = tmp_path / "note.txt"
    f.write_text("Les horaires d'ouverture de l'agence de Lille changent en janvier.")
    async with grpc.aio.insecure_channel(running.address) as ch:
        stub = pb_grpc.IngestionServiceStub(ch)
        doc = (await upload(ch, f, key="ing-nord", classification=3)).document

        async def public_hits() -> list[str]:
            r = await search(ch, "horaires agence Lille", key="read-nord", use_case="uc-public")
            return [h.citation.chunk_id for h in r.results]

        before_conf = await search(ch, "horaires agence Lille", key="read-nord", use_case="uc-conf")
        assert before_conf.results and await public_hits() == []

        refusals = [
            (_req(doc.name, []), "INVALID_ARGUMENT", "UPDATE_MASK_REQUIRED", "ing-nord"),
            (_req(doc.name, ["colour"]), "INVALID_ARGUMENT", "UNKNOWN_FIELD_MASK_PATH", "ing-nord"),
            (
                _req(doc.name, ["collection"], collection="autre"),
                "INVALID_ARGUMENT",
                "IMMUTABLE_FIELD",
                "ing-nord",
            ),
            (
                _req(doc.name, ["classification"], classification=9),
                "INVALID_ARGUMENT",
                "UNKNOWN_ENUM_VALUE",
                "ing-nord",
            ),
            (
                _req(doc.name, ["classification"]),
                "INVALID_ARGUMENT",
                "INVALID_CLASSIFICATION",
                "ing-nord",
            ),
            (
                _req(doc.name, ["classification"], classification=1),
                "NOT_FOUND",
                "DOCUMENT_NOT_FOUND",
                "ing-sud",
            ),
            (
                _req(doc.name, ["classification"], classification=1),
                "PERMISSION_DENIED",
                "INGESTER_ROLE_REQUIRED",
                "read-nord",
            ),
            (
                _req("documents/" + "0" * 32, ["metadata"]),
                "NOT_FOUND",
                "DOCUMENT_NOT_FOUND",
                "ing-nord",
            ),
        ]
        for req, code, reason, key in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.UpdateDocument(req, metadata=md(key))
            assert (err.value.code().name, error_reason(err.value)) == (code, reason)
        unchanged = (
            await stub.GetDocument(pb.GetDocumentRequest(name=doc.name), metadata=md("read-nord"))
        ).document
        assert (unchanged.classification, dict(unchanged.metadata)) == (3, {})
        assert await public_hits() == []

        resp = await stub.UpdateDocument(
            _req(
                doc.name,
                ["classification", "metadata"],
                classification=1,
                metadata={"service": "accueil"},
            ),
            metadata=md("ing-nord"),
        )
        got = resp.document
        assert got.classification == 1 and dict(got.metadata) == {"service": "accueil"}
        assert (got.version, got.chunk_count, got.sha256) == (
            doc.version,
            doc.chunk_count,
            doc.sha256,
        )
        # The PUBLIC use case now finds exactly the chunks that were there before.
        assert sorted(await public_hits()) == sorted(
            h.citation.chunk_id for h in before_conf.results
        )
    audit = AuditLog(make_engine(env.settings.resolved_database_url), create_tables=False)
    updates = [r for r in audit.records() if r.action == "UPDATE"]
    assert len(updates) == 1 and updates[0].details["fields"] == ["classification", "metadata"]
    assert {r.outcome for r in audit.records() if r.action in ("DENIED", "REJECTED")} >= {
        "UPDATE_MASK_REQUIRED",
        "UNKNOWN_FIELD_MASK_PATH",
        "IMMUTABLE_FIELD",
        "INGESTER_ROLE_REQUIRED",
    }
    assert audit.verify().ok
