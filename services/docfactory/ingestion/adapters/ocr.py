"""OCR per PDF page: a page whose text layer is missing or mostly garbage is rasterised
(``pdftoppm``) and read by tesseract (``fra+eng``), the other pages keep their text layer.

Every page records how its text was obtained (:class:`PageExtraction`: ``text_layer``, ``ocr``
or ``none``) and, for OCR, tesseract's mean word confidence (0-1, weighted by word length).
:func:`extraction_metadata` turns that into the document metadata ingestion stores:

- ``page_extraction``: JSON list, one ``{"page", "method"[, "ocr_confidence"]}`` per page;
- ``ocr_pages``: how many pages were OCR'd; ``ocr_confidence``: their mean confidence;
- ``ocr_low_confidence``: ``"true"`` when that mean is under the threshold (default 0.6), the
  flag the document teams' view shows.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TEXT_LAYER = "text_layer"
OCR = "ocr"
NONE = "none"

MIN_PAGE_CHARS = 25  # fewer non-space characters than this: no usable text layer
MIN_GOOD_RATIO = 0.6  # share of letters/digits/common punctuation among non-space characters
LOW_CONFIDENCE = 0.6
_CID = re.compile(r"\(cid:\d+\)")
_GOOD = re.compile(r"[\w.,;:!?'\"()«»%€$/&@+\-–—’]", re.UNICODE)


class _Element(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def page_number(self) -> int: ...


@dataclass(frozen=True)
class PageExtraction:
    page: int
    method: str
    ocr_confidence: float | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"page": self.page, "method": self.method}
        if self.ocr_confidence is not None:
            out["ocr_confidence"] = round(self.ocr_confidence, 3)
        return out


@dataclass(frozen=True)
class OcrParagraph:
    text: str
    confidence: float


def usable_text(text: str) -> bool:
    """Whether a page's text layer is worth keeping (enough characters, mostly not garbage:
    ``(cid:NN)`` glyph codes, replacement characters, symbol soup from a broken font map)."""
    text = _CID.sub("\ufffd", text)
    chars = [c for c in text if not c.isspace()]
    if len(chars) < MIN_PAGE_CHARS:
        return False
    good = sum(1 for c in chars if c != "\ufffd" and _GOOD.match(c))
    return good / len(chars) >= MIN_GOOD_RATIO


def pdf_pages(path: Path) -> tuple[int, set[int]]:
    """(page count, pages that show an image): a near-empty page without any image is blank,
    not scanned, and is not worth an OCR pass. Pages that cannot be inspected count as images."""
    try:
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        count = len(reader.pages)
    except Exception:
        return 0, set()
    with_images = set()
    for i, page in enumerate(reader.pages, 1):
        try:
            if len(page.images) > 0:
                with_images.add(i)
        except Exception:
            with_images.add(i)
    return count, with_images


def ocr_pdf_page(
    path: Path, page: int, languages: Sequence[str], dpi: int = 300
) -> list[OcrParagraph]:
    """Rasterise one page with pdftoppm and OCR it; paragraphs with their confidence (0-1)."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="docfactory-ocr-") as tmp:
        prefix = Path(tmp) / "page"
        subprocess.run(
            [
                *("pdftoppm", "-f", str(page), "-l", str(page), "-r", str(dpi), "-gray"),
                *("-png", str(path), str(prefix)),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        images = sorted(Path(tmp).glob("page*.png"))
        if not images:
            return []
        with Image.open(images[0]) as img:
            return ocr_image(img, languages)


def ocr_image(image: object, languages: Sequence[str]) -> list[OcrParagraph]:
    import unstructured_pytesseract as tess

    data = tess.image_to_data(
        image, lang="+".join(languages) or "eng", output_type=tess.Output.DICT
    )
    paragraphs: dict[tuple[int, int], list[tuple[int, str, float]]] = {}
    for i, word in enumerate(data.get("text", [])):
        word = str(word or "").strip()
        conf = float(data["conf"][i])
        if not word or conf < 0:
            continue
        key = (int(data["block_num"][i]), int(data["par_num"][i]))
        paragraphs.setdefault(key, []).append((int(data["line_num"][i]), word, conf))
    out = []
    for words in paragraphs.values():
        text = " ".join(w for _, w, _ in words)
        weight = sum(len(w) for _, w, _ in words)
        conf = sum(len(w) * c for _, w, c in words) / max(weight, 1) / 100.0
        out.append(OcrParagraph(text, conf))
    return out


def confidence(paragraphs: Sequence[OcrParagraph]) -> float:
    weight = sum(len(p.text) for p in paragraphs)
    if not weight:
        return 0.0
    return sum(len(p.text) * p.confidence for p in paragraphs) / weight


def garbage_text(text: str) -> bool:
    """Enough characters for a page, but mostly not text (a broken font map)."""
    chars = [c for c in _CID.sub("\ufffd", text) if not c.isspace()]
    return len(chars) >= MIN_PAGE_CHARS and not usable_text(text)


def pages_to_ocr(
    elements: Sequence[_Element], page_count: int, with_images: set[int] | None = None
) -> list[int]:
    """Pages (1-based) whose text layer is mostly garbage, or missing / too short on a page
    that shows an image (all pages count as showing one when ``with_images`` is None)."""
    texts: dict[int, list[str]] = {}
    for el in elements:
        texts.setdefault(el.page_number, []).append(el.text)
    out = []
    for p in range(1, page_count + 1):
        text = " ".join(texts.get(p, []))
        if usable_text(text):
            continue
        if garbage_text(text) or with_images is None or p in with_images:
            out.append(p)
    return out


def extraction_metadata(
    pages: Sequence[PageExtraction], low_confidence: float = LOW_CONFIDENCE
) -> Mapping[str, str]:
    if not pages:
        return {}
    meta = {"page_extraction": json.dumps([p.as_dict() for p in pages], separators=(",", ":"))}
    ocr = [p for p in pages if p.method == OCR and p.ocr_confidence is not None]
    meta["ocr_pages"] = str(len(ocr))
    if ocr:
        mean = sum(p.ocr_confidence or 0.0 for p in ocr) / len(ocr)
        meta["ocr_confidence"] = f"{mean:.3f}"
        meta["ocr_low_confidence"] = "true" if mean < low_confidence else "false"
    return meta
