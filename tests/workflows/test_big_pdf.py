"""A 1,000-page PDF in a dossier costs no more memory than ingesting it.

``docfactory serve`` runs in its own process so that its peak resident memory (VmHWM) can be
read. The server first ingests a small file and makes a small dossier (models and code
loaded), then the 1,000-page PDF through
the normal ingestion path: the rise of the peak is what ingestion itself costs for that file
(its limits). The same PDF is then put in a dossier (CreateDossier): the dossier's uploads go
through that same ingestion path, and its page texts come from ingestion's own parse, so the
peak must stay where plain ingestion left it; a second dossier must not raise it either (no
growth). The PDF's text is real (War and Peace, from the formats corpus), laid out three lines
per page on 1,000 pages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.workflows.v1 import workflows_service_pb2 as pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as pb_grpc
from tests.conftest import ROOT, WORKER_KEY, write_keys
from tests.fault.support import Serve, clean_env, free_port
from tests.workflows import dossiers
from tests.workflows.conftest import create_dossier, md, stub, wait_state

pytestmark = pytest.mark.slow

PAGES = 1000
KEY = "key-acme"
CHUNK = 64 * 1024
#: Head room for allocator noise between two parses of the same file (MB).
SLACK_MB = 24


def write_book_pdf(path: Path, book: Path, pages: int, lines_per_page: int = 3) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    words = book.read_text(encoding="utf-8", errors="replace").split()
    c = canvas.Canvas(str(path), pagesize=A4, invariant=True)
    w = 0
    for page in range(1, pages + 1):
        c.setFont("Helvetica", 10.5)
        y = 800.0
        c.drawString(60, y, f"Annexe, page {page}")
        for _ in range(lines_per_page - 1):
            y -= 17
            c.drawString(60, y, " ".join(words[w : w + 12]))
            w = (w + 12) % max(len(words) - 12, 1)
        c.showPage()
    c.save()


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("VmHWM not found")


async def upload(ch: grpc.aio.Channel, path: Path) -> ing_pb.UploadDocumentResponse:
    data = path.read_bytes()

    async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename=path.name, collection="annexes")
        )
        for i in range(0, len(data), CHUNK):
            yield ing_pb.UploadDocumentRequest(data=data[i : i + CHUNK])

    resp: ing_pb.UploadDocumentResponse = await ing_grpc.IngestionServiceStub(ch).UploadDocument(
        reqs(), metadata=(("x-api-key", KEY),), timeout=900
    )
    return resp


async def test_thousand_page_pdf_in_a_dossier_without_memory_growth(
    tmp_path: Path, shared_book: Path
) -> None:
    small = tmp_path / "note.pdf"
    write_book_pdf(small, shared_book, 2)
    big = tmp_path / "annexes.pdf"
    write_book_pdf(big, shared_book, PAGES)
    keys = write_keys(tmp_path / "keys.yaml")
    serve = Serve(
        tmp_path / "data", free_port(), tmp_path / "serve.log", {"DOCFACTORY_KEYS_FILE": str(keys)}
    )
    try:
        await serve.ready()
        async with grpc.aio.insecure_channel(
            serve.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        ) as ch:
            warm = await upload(ch, small)
            assert warm.document.page_count == 2
            assert (await create_dossier(ch, [small], KEY)).documents[0].page_count == 2
            before = peak_mb(serve.proc.pid)

            plain = await upload(ch, big)
            assert plain.document.page_count == PAGES
            ingestion_peak = peak_mb(serve.proc.pid)

            dossier = await create_dossier(ch, [big], KEY)
            (doc,) = dossier.documents
            assert doc.page_count == PAGES
            dossier_peak = peak_mb(serve.proc.pid)

            again = await create_dossier(ch, [big], KEY)
            assert again.documents[0].page_count == PAGES
            second_peak = peak_mb(serve.proc.pid)

            got = await pb_grpc.WorkflowServiceStub(ch).GetDossier(
                pb.GetDossierRequest(name=dossier.name), metadata=(("x-api-key", KEY),)
            )
            assert got.dossier.documents[0].page_count == PAGES

            # A run over a financing dossier, then over the same dossier with the 1,000-page
            # annex: the worker's peak memory stays where the plain dossier left it.
            files = dossiers.financement(tmp_path / "d")
            worker = start_worker(tmp_path, serve.address)
            try:
                plain_run = await run_to_signoff(ch, await create_dossier(ch, files, KEY))
                assert len(plain_run.result.documents) == len(files)
                worker_plain = peak_mb(worker.pid)
                big_run = await run_to_signoff(ch, await create_dossier(ch, [*files, big], KEY))
                assert len(big_run.result.documents) == len(files) + 1
                worker_big = peak_mb(worker.pid)
            finally:
                worker.terminate()
                worker.wait(30)
    finally:
        await asyncio.to_thread(serve.stop)
    report = (
        f"server peak RSS MB: after warm-up {before:.0f}, after ingesting {PAGES} pages "
        f"{ingestion_peak:.0f}, after the dossier {dossier_peak:.0f}, after a second "
        f"dossier {second_peak:.0f}; worker peak RSS MB: plain dossier {worker_plain:.0f}, "
        f"with the {PAGES}-page annex {worker_big:.0f}"
    )
    print(report)
    assert dossier_peak <= ingestion_peak + SLACK_MB, report
    assert second_peak <= dossier_peak + SLACK_MB, report
    assert worker_big <= worker_plain + SLACK_MB, report


def start_worker(tmp: Path, search_address: str) -> subprocess.Popen[bytes]:
    env = clean_env(
        DOCFACTORY_DATA_DIR=str(tmp / "data"),
        DOCFACTORY_KEYS_FILE=str(tmp / "keys.yaml"),
        DOCFACTORY_WORKER_API_KEY=WORKER_KEY,
        DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS=search_address,
    )
    with open(tmp / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "docfactory.workflows.engine"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
        )


async def run_to_signoff(ch: grpc.aio.Channel, dossier: pb.Dossier) -> pb.Run:
    run = (
        await stub(ch).StartRun(
            pb.StartRunRequest(dossier=dossier.name, flow="financement@1"), metadata=md(KEY)
        )
    ).run
    return await wait_state(ch, run.name, KEY, {pb.RUN_STATE_AWAITING_SIGNOFF}, within=600)


@pytest.fixture
def shared_book() -> Path:
    from tests.conftest import shared_data

    return shared_data("formats", "book-war-and-peace-1225p.txt")
