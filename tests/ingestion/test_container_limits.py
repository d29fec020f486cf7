"""Zip-based documents checked like archives before parsing (docfactory.archives.containers),
the parser's refusal, the routing of big containers to capped children, and the children's
address-space cap (issue 24, item 7)."""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from pathlib import Path

import pytest

from docfactory.archives import (
    CONTAINER_RATIO,
    CONTAINER_TOO_LARGE,
    CONTAINER_TOO_MANY_MEMBERS,
    CONTAINER_UNSUPPORTED_METHOD,
    ArchiveLimitError,
    ArchiveLimits,
    check_container,
)
from docfactory.core.errors import DocfactoryError, InvalidArgument
from docfactory.ingestion.adapters.parser import (
    DEFAULT_CONTAINER_LIMITS,
    ElasticParser,
    ParsedDocument,
    ParsedElement,
    ProcessPoolParser,
    UnstructuredParser,
    check_document_container,
)
from tests.conftest import shared_data
from tests.security.test_container_bomb import docx_bomb

LEGIT = [
    ("formats", "handbook-1p.docx"),
    ("formats", "fake-power-point.pptx"),
    ("formats", "vodafone.xlsx"),
    ("formats", "simple.odt"),
    ("formats", "winter-sports.epub"),
    ("travail-docs", "docx", "certificat_de_travail.docx"),
]


@pytest.mark.parametrize("parts", LEGIT, ids=lambda p: p[-1])
def test_legit_containers_pass(parts: tuple[str, ...]) -> None:
    path = shared_data(*parts)
    report = check_container(path, DEFAULT_CONTAINER_LIMITS)
    assert report is not None and report.members > 0
    assert report.inflated_bytes <= report.declared_bytes
    check_document_container(path, path.name, DEFAULT_CONTAINER_LIMITS)  # no refusal


def test_not_a_zip_is_not_checked(tmp_path: Path) -> None:
    text = tmp_path / "note.txt"
    text.write_text("PK is not enough to be a zip")
    assert check_container(text) is None
    assert check_container(shared_data("formats", "fake-text.txt")) is None


def test_docx_bomb_refused_from_the_central_directory(tmp_path: Path) -> None:
    bomb = docx_bomb(tmp_path / "bomb.docx")
    assert bomb.stat().st_size < 1_000_000
    t0 = time.perf_counter()
    with pytest.raises(ArchiveLimitError) as err:
        check_container(bomb, DEFAULT_CONTAINER_LIMITS)
    assert time.perf_counter() - t0 < 1.0
    assert (err.value.reason, err.value.path) == (CONTAINER_RATIO, "word/document.xml")
    assert "over the limit of 200" in err.value.message


def test_parser_refuses_before_detecting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = docx_bomb(tmp_path / "bomb.docx")
    parser = UnstructuredParser(ocr_fallback=False)

    def no_detect(path: Path, filename: str) -> str:
        raise AssertionError("the bomb reached file-type detection")

    monkeypatch.setattr(parser, "detect", no_detect)
    with pytest.raises(InvalidArgument) as err:
        parser.parse(bomb, "rapport.docx")
    assert err.value.reason == CONTAINER_RATIO
    assert err.value.message.startswith("rapport.docx: word/document.xml")
    assert dict(err.value.metadata)["member"] == "word/document.xml"


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_member_count_size_and_method_limits(tmp_path: Path) -> None:
    many = _zip(tmp_path / "many.docx", {f"part{i}.xml": b"<a/>" for i in range(11)})
    with pytest.raises(ArchiveLimitError) as err:
        check_container(many, ArchiveLimits(max_members=10))
    assert err.value.reason == CONTAINER_TOO_MANY_MEMBERS and "10" in err.value.message

    big = _zip(tmp_path / "big.xlsx", {"xl/sheet.xml": os.urandom(2 * 1024 * 1024)})
    with pytest.raises(ArchiveLimitError) as err:
        check_container(big, ArchiveLimits(max_member_bytes=1024 * 1024))
    assert (err.value.reason, err.value.path) == (CONTAINER_TOO_LARGE, "xl/sheet.xml")
    with pytest.raises(ArchiveLimitError) as err:
        check_container(big, ArchiveLimits(max_total_uncompressed_bytes=1024 * 1024))
    assert err.value.reason == CONTAINER_TOO_LARGE

    bz = _zip(tmp_path / "bz.odt", {"content.xml": b"<a/>"}, zipfile.ZIP_BZIP2)
    with pytest.raises(ArchiveLimitError) as err:
        check_container(bz)
    assert err.value.reason == CONTAINER_UNSUPPORTED_METHOD


def test_overall_ratio_of_many_small_members(tmp_path: Path) -> None:
    # Each member under the 1 MiB past which a member's own ratio is judged; all together
    # 18 MB from a few KB.
    path = _zip(tmp_path / "many.pptx", {f"ppt/s{i}.xml": bytes(900_000) for i in range(20)})
    with pytest.raises(ArchiveLimitError) as err:
        check_container(path)
    assert (err.value.reason, err.value.path) == (CONTAINER_RATIO, "")


def test_member_inflating_past_its_declared_size(tmp_path: Path) -> None:
    """Declared sizes that lie (small, so every declared check passes) are caught while
    inflating: readers that do not stop at the declared size (pandoc) would inflate it all."""
    body = b"".join(b"<text:p>ligne %d</text:p>" % i for i in range(200_000))  # ~5 MB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("content.xml", body)
    data = bytearray(buf.getvalue())
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)  # uncompressed size: 1,000 bytes
    struct.pack_into("<I", data, 22, 1000)  # and in the local header
    path = tmp_path / "liar.odt"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveLimitError) as err:
        check_container(path)
    assert (err.value.reason, err.value.path) == (CONTAINER_TOO_LARGE, "content.xml")
    assert "declared size of 1000" in err.value.message


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def parse(self, path: Path, filename: str) -> ParsedDocument:
        self.calls.append(filename)
        return ParsedDocument([ParsedElement("NarrativeText", "x")], "text/plain", 1, "fake")


class _Pool(_Recorder):
    def warm_up(self) -> None:
        pass

    def release(self) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass


def test_big_container_goes_to_the_capped_children_alone(tmp_path: Path) -> None:
    inline, pool = _Recorder(), _Pool()
    parser = ElasticParser(
        inline,
        pool,  # type: ignore[arg-type]
        idle_seconds=30,
        batch_window=0,
        inline_container_bytes=1024 * 1024,
    )
    try:
        small = shared_data("formats", "fake.docx")
        parser.parse(small, "small.docx")
        big = _zip(tmp_path / "big.docx", {"word/media/scan.bin": os.urandom(2 * 1024 * 1024)})
        parser.parse(big, "big.docx")
        assert (inline.calls, pool.calls) == (["small.docx"], ["big.docx"])
        with pytest.raises(InvalidArgument) as err:  # refused here: no child involved
            parser.parse(docx_bomb(tmp_path / "bomb.docx"), "bomb.docx")
        assert err.value.reason == CONTAINER_RATIO
        assert (inline.calls, pool.calls) == (["small.docx"], ["big.docx"])
    finally:
        parser.close()


def test_child_memory_cap_fails_the_document_not_the_server(tmp_path: Path) -> None:
    """A container within the archive limits (30:1) but too big to parse under the cap: the
    child's allocation fails, the parse is refused, the pool goes on."""

    def varied(i: int) -> bytes:
        return f"<w:p><w:r><w:t>Paragraphe {i} du rapport.</w:t></w:r></w:p>".encode()

    big = docx_bomb(tmp_path / "big.docx", inflated=60_000_000, unit=varied)
    check_container(big, DEFAULT_CONTAINER_LIMITS)  # passes the container checks
    cap = 1024**3
    pool = ProcessPoolParser(1, ocr_fallback=False, memory_limit=cap)
    try:
        pool.warm_up()
        assert pool.child_memory()["RLIMIT_AS"] == cap
        with pytest.raises(DocfactoryError) as err:
            pool.parse(big, "big.docx")
        assert err.value.reason in ("PARSE_MEMORY_EXCEEDED", "PARSER_CRASHED"), err.value
        parsed = pool.parse(shared_data("formats", "fake.docx"), "fake.docx")
        assert parsed.elements
    finally:
        pool.close()
