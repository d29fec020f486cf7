"""OCR per page: a PDF made from real pages (text pages of a real report + one of its pages
rasterised into an image-only page) -> every page's text is found, the scanned page by OCR,
the others from their text layer, and each page's method and OCR confidence are stored in the
document's metadata."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import grpc
import pytest

from docfactory.core.errors import FailedPrecondition
from docfactory.ingestion.adapters import ocr
from docfactory.ingestion.adapters.parser import UnstructuredParser, ocr_available
from docfactory.ingestion.v1 import ingestion_service_pb2 as pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from tests.conftest import shared_data
from tests.helpers import md, upload

needs_ocr = pytest.mark.skipif(
    not ocr_available(), reason="tesseract / poppler / unstructured-pytesseract not installed"
)


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-zÀ-ÿ]{5,}", text)}


def _page_text(pdf: Path, page: int) -> str:
    return subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _mixed_pdf(tmp_path: Path) -> tuple[Path, Path]:
    """Pages 1 and 3 of reliance.pdf as they are, page 2 rasterised (no text layer)."""
    from PIL import Image
    from pypdf import PdfReader, PdfWriter

    src = shared_data("formats", "pdf", "reliance.pdf")
    prefix = tmp_path / "scan"
    subprocess.run(
        ["pdftoppm", "-f", "2", "-l", "2", "-r", "200", "-gray", "-png", str(src), str(prefix)],
        check=True,
    )
    png = next(tmp_path.glob("scan*.png"))
    buf = io.BytesIO()
    with Image.open(png) as img:
        img.save(buf, "PDF", resolution=200)
    reader, scan = PdfReader(str(src)), PdfReader(io.BytesIO(buf.getvalue()))
    writer = PdfWriter()
    writer.add_page(reader.pages[0])
    writer.add_page(scan.pages[0])
    writer.add_page(reader.pages[2])
    out = tmp_path / "mixed-scan.pdf"
    with out.open("wb") as f:
        writer.write(f)
    assert _page_text(out, 2).strip() == "", "page 2 must have no text layer"
    return src, out


def test_page_text_quality() -> None:
    assert ocr.usable_text("Le comité social et économique est informé et consulté.")
    assert not ocr.usable_text("  12 ")  # too short
    assert not ocr.usable_text("(cid:3)(cid:4)(cid:5)" * 10)  # glyph codes, no text
    assert not ocr.usable_text("\ufffd\ufffd\ufffd ¤¤¤ ▯▯▯ ■■■ ◊◊◊ ¦¦¦ ¬¬¬ " * 3)
    meta = ocr.extraction_metadata(
        [ocr.PageExtraction(1, ocr.TEXT_LAYER), ocr.PageExtraction(2, ocr.OCR, 0.41)]
    )
    assert meta["ocr_pages"] == "1" and meta["ocr_low_confidence"] == "true"
    assert json.loads(meta["page_extraction"])[1] == {
        "page": 2,
        "method": "ocr",
        "ocr_confidence": 0.41,
    }


@needs_ocr
@pytest.mark.slow
async def test_mixed_pdf_every_page_found_each_method_recorded(
    tmp_path: Path, channel: grpc.aio.Channel
) -> None:
    src, mixed = _mixed_pdf(tmp_path)
    doc = UnstructuredParser().parse(mixed, mixed.name)
    assert doc.page_count == 3
    pages = {p["page"]: p for p in json.loads(doc.metadata["page_extraction"])}
    assert [pages[p]["method"] for p in (1, 2, 3)] == ["text_layer", "ocr", "text_layer"]
    assert 0.6 < pages[2]["ocr_confidence"] <= 1.0
    assert doc.metadata["ocr_pages"] == "1" and doc.metadata["ocr_low_confidence"] == "false"
    assert doc.strategy.endswith("+ocr")
    for page in (1, 2, 3):
        expected = _words(_page_text(src, page))
        found = _words(" ".join(e.text for e in doc.elements if e.page_number == page))
        assert expected, page
        recall = len(expected & found) / len(expected)
        assert recall >= 0.85, (page, recall, sorted(expected - found)[:20])

    # through ingestion: the same figures are stored with the document
    r = await upload(channel, mixed)
    assert r.document.state == pb.DOCUMENT_STATE_INDEXED and r.document.page_count == 3
    got = await pb_grpc.IngestionServiceStub(channel).GetDocument(
        pb.GetDocumentRequest(name=r.document.name), metadata=md("key-acme")
    )
    stored = json.loads(got.document.metadata["page_extraction"])
    assert [p["method"] for p in stored] == ["text_layer", "ocr", "text_layer"]
    assert got.document.metadata["ocr_low_confidence"] == "false"


@needs_ocr
@pytest.mark.slow
def test_text_shown_only_in_pictures_is_read() -> None:
    """Files whose only text is in an image: a HEIC scan, a slide that is one picture."""
    parser = UnstructuredParser()
    heic = parser.parse(shared_data("formats", "img", "DA-1p.heic"), "DA-1p.heic")
    assert heic.mime_type == "image/heic"
    assert "Abomination" in " ".join(e.text for e in heic.elements)
    slide = parser.parse(shared_data("formats", "picture.pptx"), "picture.pptx")
    assert slide.strategy == "ocr_media"
    assert "python" in " ".join(e.text for e in slide.elements).lower()
    # without OCR the slide has no text and says so
    with pytest.raises(FailedPrecondition) as err:
        UnstructuredParser(ocr_fallback=False).parse(
            shared_data("formats", "picture.pptx"), "picture.pptx"
        )
    assert err.value.reason == "NO_TEXT_EXTRACTED"
