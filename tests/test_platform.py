"""Server-level behaviour: reflection, health, auth, errors with ErrorInfo, tenancy, pagination."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from docfactory.app import RunningServer
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.conftest import ROOT, shared_data
from tests.helpers import error_reason, md, search, upload

SERVICES = {
    "docfactory.ingestion.v1.IngestionService",
    "docfactory.chunking.v1.ChunkingService",
    "docfactory.embedding.v1.EmbeddingService",
    "docfactory.answering.v1.AnsweringService",
}


async def test_reflection_lists_the_four_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def reqs():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for resp in stub.ServerReflectionInfo(reqs()):
        names |= {s.name for s in resp.list_services_response.service}
    assert names >= SERVICES
    assert "grpc.health.v1.Health" in names


async def test_health_serving_without_key(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ["", *SERVICES]:
        r = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert r.status == health_pb2.HealthCheckResponse.SERVING, name


@pytest.mark.parametrize(
    ("key", "reason"),
    [(None, "API_KEY_MISSING"), ("nope", "API_KEY_INVALID"), ("key-expired", "API_KEY_EXPIRED")],
)
async def test_unauthenticated(channel: grpc.aio.Channel, key: str | None, reason: str) -> None:
    stub = ing_grpc.IngestionServiceStub(channel)
    metadata = md(key) if key else ()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # AIP-193: google.rpc.Status with an ErrorInfo detail in the trailers
    raw = dict(err.value.trailing_metadata() or ())["grpc-status-details-bin"]
    st = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info)
    assert info.reason == reason and info.domain == "docfactory"


async def test_bearer_token_accepted(channel: grpc.aio.Channel) -> None:
    stub = ing_grpc.IngestionServiceStub(channel)
    r = await stub.ListDocuments(
        ing_pb.ListDocumentsRequest(), metadata=(("authorization", "Bearer key-acme"),)
    )
    assert r.total_size == 0


async def test_bad_inputs_get_specific_errors(channel: grpc.aio.Channel, tmp_path: Path) -> None:
    cases = []
    bogus = tmp_path / "data.bin"
    bogus.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upload(channel, bogus)
    cases.append((err.value, grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED_FORMAT"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upload(channel, empty)
    cases.append((err.value, grpc.StatusCode.FAILED_PRECONDITION, "EMPTY_FILE"))
    ok = tmp_path / "ok.txt"
    ok.write_text("Bonjour.")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upload(channel, ok, collection="bad name!")
    cases.append((err.value, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_COLLECTION"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await search(channel, "   ")
    cases.append((err.value, grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_QUERY"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await search(channel, "x", top_k=1000)
    cases.append((err.value, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TOP_K"))
    stub = ing_grpc.IngestionServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDocument(
            ing_pb.GetDocumentRequest(name="documents/unknown"), metadata=md("key-acme")
        )
    cases.append((err.value, grpc.StatusCode.NOT_FOUND, "DOCUMENT_NOT_FOUND"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListDocuments(
            ing_pb.ListDocumentsRequest(page_token="garbage"), metadata=md("key-acme")
        )
    cases.append((err.value, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN"))
    for exc, code, reason in cases:
        assert exc.code() == code, (exc, reason)
        assert error_reason(exc) == reason
    # none of the failures stored a vector or broke the server
    r = await stub.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("key-acme"))
    assert {d.filename for d in r.documents} <= {"data.bin", "empty.txt"}
    assert all(d.state == ing_pb.DOCUMENT_STATE_FAILED for d in r.documents)


async def test_tenant_isolation_with_overlapping_content(
    channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    text = (
        "Politique de remboursement des frais de mission. Les frais de repas sont remboursés "
        "sur présentation des justificatifs dans la limite de {limit} euros par jour."
    )
    for key, limit in (("key-acme", 20), ("key-globex", 35)):
        f = tmp_path / f"frais-{key}.txt"
        f.write_text(text.format(limit=limit))
        await upload(channel, f, key=key, filename="frais.txt")
    for key, tenant_limit, other in (("key-acme", "20", "35"), ("key-globex", "35", "20")):
        for mode in (1, 2, 3):
            res = await search(
                channel, "remboursement des frais de repas", key=key, top_k=10, mode=mode
            )
            assert res.results, (key, mode)
            assert all(tenant_limit in r.text and other not in r.text for r in res.results)
    # a document id of another tenant is invisible
    stub = ing_grpc.IngestionServiceStub(channel)
    acme_docs = await stub.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("key-acme"))
    assert acme_docs.total_size == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDocument(
            ing_pb.GetDocumentRequest(name=acme_docs.documents[0].name), metadata=md("key-globex")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    res = await search(
        channel, "frais", key="key-globex", document_ids=[acme_docs.documents[0].document_id]
    )
    assert not res.results


async def test_reupload_unchanged_and_new_version(
    channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    f = tmp_path / "note.md"
    f.write_text("# Note\n\nLa cantine ouvre à midi.")
    first = await upload(channel, f)
    again = await upload(channel, f)
    assert again.unchanged and again.document.version == first.document.version == 1
    f.write_text("# Note\n\nLa cantine ouvre à onze heures trente.")
    second = await upload(channel, f)
    assert not second.unchanged and second.document.version == 2
    assert second.document.document_id == first.document.document_id
    res = await search(channel, "cantine ouverture", top_k=10)
    assert [r.citation.document_version for r in res.results] == [2] * len(res.results)
    assert all("midi" not in r.text for r in res.results)
    # a broken new version leaves the indexed one untouched
    with pytest.raises(grpc.aio.AioRpcError):
        await upload(channel, f, data=b"")
    res = await search(channel, "cantine", top_k=10)
    assert res.results and all(r.citation.document_version == 2 for r in res.results)


async def test_list_documents_pagination(channel: grpc.aio.Channel, tmp_path: Path) -> None:
    for i in range(5):
        f = tmp_path / f"doc{i}.txt"
        f.write_text(f"Document numéro {i} sur la sécurité informatique.")
        await upload(channel, f, collection="pages")
    stub = ing_grpc.IngestionServiceStub(channel)
    seen, token = [], ""
    while True:
        r = await stub.ListDocuments(
            ing_pb.ListDocumentsRequest(page_size=2, page_token=token, collection="pages"),
            metadata=md("key-acme"),
        )
        assert len(r.documents) <= 2 and r.total_size == 5
        seen += [d.name for d in r.documents]
        token = r.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_deadline_is_honoured(server: RunningServer, tmp_path: Path) -> None:
    big = shared_data("formats", "book-war-and-peace-1p.txt")
    async with grpc.aio.insecure_channel(server.address) as ch:
        stub = ing_grpc.IngestionServiceStub(ch)

        async def reqs():  # type: ignore[no-untyped-def]
            yield ing_pb.UploadDocumentRequest(metadata=ing_pb.UploadMetadata(filename=big.name))
            yield ing_pb.UploadDocumentRequest(data=big.read_bytes())

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.UploadDocument(reqs(), metadata=md("key-acme"), timeout=0.05)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # the server is still healthy afterwards
        r = await stub.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("key-acme"))
        assert r is not None


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    generated = sorted(out.rglob("*_pb2*.py*"))
    assert generated
    for f in generated:
        committed = ROOT / "services" / f.relative_to(out)
        assert committed.exists(), f"{committed} missing: run scripts/gen_protos.py"
        assert committed.read_bytes() == f.read_bytes(), (
            f"{committed} is stale: run scripts/gen_protos.py"
        )


def test_buf_lint() -> None:
    import shutil

    buf = shutil.which("buf")
    if buf is None:
        pytest.skip("buf not installed (npm install -g @bufbuild/buf)")
    r = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_metrics_endpoint_counts_rpcs(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from docfactory.app import start_server

    running = await start_server(make_settings(server={"metrics_port": 0}), port=0)
    try:
        assert running.metrics_port
        async with grpc.aio.insecure_channel(running.address) as ch:
            f = tmp_path / "m.txt"
            f.write_text("Les métriques sont exposées au format Prometheus.")
            await upload(ch, f, key="key-globex")
            await search(ch, "métriques", key="key-globex")
            with pytest.raises(grpc.aio.AioRpcError):
                await search(ch, "", key="key-globex")
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{running.metrics_port}/metrics")).text
    finally:
        await running.stop(0.5)
    search_ok = (
        'docfactory_rpc_requests_total{code="OK",method="Search",'
        'service="docfactory.answering.v1.AnsweringService",tenant="globex"}'
    )
    bad = (
        'docfactory_rpc_requests_total{code="INVALID_ARGUMENT",method="Search",'
        'service="docfactory.answering.v1.AnsweringService",tenant="globex"}'
    )
    assert search_ok in text and bad in text
    assert 'docfactory_documents_ingested_total{outcome="indexed",tenant="globex"}' in text
    assert "docfactory_rpc_duration_seconds_bucket" in text
