"""Every file of ../shared/data/formats goes through ingestion (IngestPath RPC, the real
parse -> chunk -> embed -> index path): each lands with chunks or gets a specific error, and the
outcome per format family is asserted. OCR is switched off for the sweep (scanned files then
fail with NO_TEXT_EXTRACTED / OCR_UNAVAILABLE); OCR itself is tested on two real scans."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from docfactory.app import start_server
from docfactory.core.config import Settings
from docfactory.ingestion.adapters.convert import converter_available
from docfactory.ingestion.adapters.parser import ocr_available
from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from tests.conftest import INGESTER_KEY, shared_data
from tests.helpers import md, upload

INDEXED = pb.DOCUMENT_STATE_INDEXED
FAILED = pb.DOCUMENT_STATE_FAILED

# family -> extensions; every file of these families must be indexed
MUST_INDEX = {
    "docx": {".docx"},
    "pptx": {".pptx"},
    "xlsx": {".xlsx"},
    "html": {".html", ".htm"},
    "markdown": {".md"},
    "text": {".txt", ".rst", ".org", ".xml", ".yaml", ".go"},
    "email": {".eml"},
    "odt": {".odt"},
    "csv": {".csv", ".tsv"},
    "rtf": {".rtf"},
    "epub": {".epub"},
}
# Legacy office files: indexed through LibreOffice where it is installed (CI installs it),
# CONVERTER_UNAVAILABLE where it is not.
LEGACY_OFFICE = {
    "simple.doc",
    "fake.doc",
    "duplicate-paragraphs.doc",
    "fake-doc-emphasized-text.doc",
    "fake-power-point.ppt",
    "tests-example.xls",
}
if converter_available():
    MUST_INDEX["legacy"] = {".doc", ".ppt", ".xls"}
# file -> reason, for files whose failure is expected and specific
EXPECTED_FAILURES = {
    "empty.txt": "EMPTY_FILE",
    **({} if converter_available() else dict.fromkeys(LEGACY_OFFICE, "CONVERTER_UNAVAILABLE")),
    "simple.zip": "UNSUPPORTED_FORMAT",  # archives: the bulk-archive pipeline, not one document
    "DA-1p.heic": "UNSUPPORTED_FORMAT",
    "picture.pptx": "NO_TEXT_EXTRACTED",  # a slide with only a picture
    "fake-encrypted.msg": "NO_TEXT_EXTRACTED",
}
# scanned PDFs (no text layer): need OCR, switched off for the sweep
SCANNED_PDFS = {"loremipsum-flat.pdf", "table-multi-row-column-cells.pdf"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tiff", ".bmp"}
# Book-length files (1,225 / 872 / 619 / 400 pages) exercise nothing their 1-page siblings in the
# corpus do not, and take minutes each on 2 cores: bench/bench_ingestion.py --include-large
# ingests them; the suite keeps its time bounded.
LARGE = {
    "book-war-and-peace-1225p.txt",
    "handbook-872p.docx",
    "DA-619p.pdf",
    "pdf2image-memory-error-test-400p.pdf",
}


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_every_format_file_lands_or_fails_specifically(
    make_settings: Callable[..., Settings],
) -> None:
    root = shared_data("formats")
    files = sorted(
        f
        for f in root.rglob("*")
        if f.is_file() and not f.name.startswith(".") and f.name not in LARGE
    )
    assert len(files) > 150
    # IngestPath reads the server's disk: only under configured roots, for an ingester key.
    settings = make_settings(parsing={"ocr_fallback": False, "ingest_path_roots": [str(root)]})
    running = await start_server(settings, port=0)
    results: dict[str, pb.IngestPathResponse] = {}
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = pb_grpc.IngestionServiceStub(ch)
            async for r in stub.IngestPath(
                pb.IngestPathRequest(paths=[str(f) for f in files], collection="formats"),
                metadata=md(INGESTER_KEY),
                timeout=1800,
            ):
                results[str(Path(r.path).relative_to(root))] = r
            listed = await stub.ListDocuments(
                pb.ListDocumentsRequest(collection="formats", page_size=1000),
                metadata=md("key-acme"),
            )
    finally:
        await running.stop(0.5)

    assert len(results) == len(files)
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    problems = []
    for rel, r in results.items():
        name, ext = Path(rel).name, Path(rel).suffix.lower()
        d = r.document
        # every outcome is either indexed with chunks, or failed with a specific reason
        if d.state == INDEXED:
            assert d.chunk_count > 0, rel
            by_family[ext]["indexed"] += 1
        else:
            assert d.state == FAILED and d.error_reason and d.error_message, rel
            assert d.error_reason not in {"INTERNAL", "UNKNOWN"}, rel
            by_family[ext][d.error_reason] += 1
        if name in EXPECTED_FAILURES:
            if d.error_reason != EXPECTED_FAILURES[name]:
                problems.append((rel, EXPECTED_FAILURES[name], d.error_reason))
        elif name in SCANNED_PDFS or ext in IMAGE_EXT:
            if d.error_reason not in {"NO_TEXT_EXTRACTED", "OCR_UNAVAILABLE"}:
                problems.append((rel, "NO_TEXT_EXTRACTED|OCR_UNAVAILABLE", d.error_reason))
        elif ext == ".pdf":
            if d.state != INDEXED:
                problems.append((rel, "INDEXED", d.error_reason))
            else:
                assert d.page_count >= 1, rel
        elif any(ext in exts for exts in MUST_INDEX.values()) and d.state != INDEXED:
            problems.append((rel, "INDEXED", f"{d.error_reason}: {d.error_message}"))
    assert not problems, problems
    # each family of the issue is represented and indexed
    for exts in MUST_INDEX.values():
        assert any(by_family[e]["indexed"] for e in exts), exts
    assert by_family[".pdf"]["indexed"] >= 20
    # the failures are stored as FAILED documents, successes as INDEXED
    states = Counter(d.state for d in listed.documents)
    assert states[INDEXED] == sum(c["indexed"] for c in by_family.values())


@pytest.mark.slow
async def test_ocr_of_scanned_pdfs(channel: grpc.aio.Channel) -> None:
    if not ocr_available():
        pytest.skip("tesseract / poppler / unstructured-pytesseract not installed")
    fr = shared_data("travail-docs", "pdf", "points-de-vigilance.pdf")
    en = shared_data("formats", "pdf", "loremipsum-flat.pdf")
    r = await upload(channel, en)
    assert r.document.state == INDEXED and r.document.page_count >= 1
    r = await upload(channel, fr)
    assert r.document.state == INDEXED and r.document.chunk_count >= 1
