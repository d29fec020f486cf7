"""Issue 24, item 7: the OOXML bomb. A 362 KB .docx whose word/document.xml inflates to
~100 MB held a server thread for minutes (client DEADLINE_EXCEEDED at 300 s, RSS 708 MB ->
1.8 GB, no audit entry). Zip-based documents are now checked like archives before anything
reads them: the upload is refused at once with INVALID_ARGUMENT and the container reason
(CONTAINER_RATIO: the archive limit of 200:1), nothing is parsed or indexed, and the refusal is
in the audit chain. Same for the OpenDocument and XLSX variants."""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from docfactory.app import RunningServer, start_server
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.ingestion.adapters import fastparse
from docfactory.ingestion.adapters.parser import UnstructuredParser
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.security._env import Env, details, make_env, md

pytestmark = pytest.mark.asyncio(loop_scope="module")

MB = 1_000_000

# --------------------------------------------------------------------------- the bombs

_XML = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
_DOCX_TYPES = _XML + (
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" '
    b'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_XLSX_TYPES = _XML + (
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" '
    b'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/xl/workbook.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    b'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
)
_REL = b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
_RELS_OPEN = _XML + (
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
)


def _stream(
    zf: zipfile.ZipFile, name: str, head: bytes, unit: Callable[[int], bytes], tail: bytes, n: int
) -> None:
    """Write ``head + unit(0) + unit(1) + ... + tail`` (about ``n`` bytes) as one deflated
    member, 1,000 units at a time: the test never holds the inflated part in memory."""
    with zf.open(name, "w", force_zip64=True) as f:
        f.write(head)
        written, i = len(head), 0
        while written < n:
            block = b"".join(unit(j) for j in range(i, i + 1000))
            f.write(block)
            written += len(block)
            i += 1000
        f.write(tail)


def _paragraph(i: int) -> bytes:
    # Text that changes every 64 paragraphs: ~270:1, like the reported 362 KB -> 100 MB.
    return (
        f"<w:p><w:r><w:t>Paragraphe {i // 64} du rapport annuel de la direction.</w:t></w:r></w:p>"
    ).encode()


def docx_bomb(
    path: Path, inflated: int = 100 * MB, unit: Callable[[int], bytes] = _paragraph
) -> Path:
    """A valid minimal .docx whose word/document.xml inflates to ``inflated`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", _DOCX_TYPES)
        zf.writestr(
            "_rels/.rels",
            _RELS_OPEN + _REL + b'relationships/officeDocument" Target="word/document.xml"/>'
            b"</Relationships>",
        )
        _stream(
            zf,
            "word/document.xml",
            _XML + b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/'
            b'2006/main"><w:body>',
            unit,
            b"</w:body></w:document>",
            inflated,
        )
    return path


def odt_bomb(path: Path, inflated: int = 40 * MB) -> Path:
    """An OpenDocument text whose content.xml inflates to ``inflated`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(
            zipfile.ZipInfo("mimetype"), b"application/vnd.oasis.opendocument.text"
        )  # first and stored, as ODF requires
        zf.writestr(
            "META-INF/manifest.xml",
            _XML + b'<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:'
            b'xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry '
            b'manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
            b'text"/><manifest:file-entry manifest:full-path="content.xml" '
            b'manifest:media-type="text/xml"/></manifest:manifest>',
        )
        _stream(
            zf,
            "content.xml",
            _XML + b'<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:'
            b'xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
            b'office:version="1.2"><office:body><office:text>',
            lambda i: b"<text:p>Le rapport annuel de la direction.</text:p>",
            b"</office:text></office:body></office:document-content>",
            inflated,
        )
    return path


def xlsx_bomb(path: Path, inflated: int = 40 * MB) -> Path:
    """A workbook whose xl/worksheets/sheet1.xml inflates to ``inflated`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", _XLSX_TYPES)
        zf.writestr(
            "_rels/.rels",
            _RELS_OPEN + _REL + b'relationships/officeDocument" Target="xl/workbook.xml"/>'
            b"</Relationships>",
        )
        ns = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
        zf.writestr(
            "xl/workbook.xml",
            _XML + b"<workbook " + ns + b' xmlns:r="http://schemas.openxmlformats.org/'
            b'officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" '
            b'r:id="rId1"/></sheets></workbook>',
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels",
            _RELS_OPEN + _REL + b'relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            b"</Relationships>",
        )
        _stream(
            zf,
            "xl/worksheets/sheet1.xml",
            _XML + b"<worksheet " + ns + b"><sheetData>",
            lambda i: b'<row><c t="inlineStr"><is><t>rapport annuel</t></is></c></row>',
            b"</sheetData></worksheet>",
            inflated,
        )
    return path


BOMBS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "rapport.docx": (docx_bomb, "word/document.xml"),
    "rapport.odt": (odt_bomb, "content.xml"),
    "rapport.xlsx": (xlsx_bomb, "xl/worksheets/sheet1.xml"),
}

# --------------------------------------------------------------------------- the server


class Ctx:
    def __init__(self, env: Env, server: RunningServer, channel: grpc.aio.Channel) -> None:
        self.env = env
        self.server = server
        self.ch = channel

    @property
    def audit(self) -> AuditLog:
        return AuditLog(make_engine(self.env.settings.resolved_database_url), create_tables=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ctx]:
    env = make_env(tmp_path_factory.mktemp("container-bomb"))
    running = await start_server(env.settings, port=0)
    channel = grpc.aio.insecure_channel(running.address)
    try:
        yield Ctx(env, running, channel)
    finally:
        await channel.close()
        await running.stop(0.5)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Files the server (in this process) began to detect or partition."""
    seen: list[str] = []
    detect, partition = UnstructuredParser.detect, fastparse.partition

    def spy_detect(self: UnstructuredParser, path: Path, filename: str) -> str:
        seen.append(filename)
        return detect(self, path, filename)

    def spy_partition(filename: str, kind: str, **kwargs: Any) -> list[Any]:
        seen.append(filename)
        return partition(filename, kind, **kwargs)

    monkeypatch.setattr(UnstructuredParser, "detect", spy_detect)
    monkeypatch.setattr(fastparse, "partition", spy_partition)
    yield seen


async def _upload(ch: grpc.aio.Channel, name: str, data: bytes, deadline: float) -> Any:
    stub = ing_grpc.IngestionServiceStub(ch)

    async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename=name, collection="rapports")
        )
        for i in range(0, len(data), 256 * 1024):
            yield ing_pb.UploadDocumentRequest(data=data[i : i + 256 * 1024])

    return await stub.UploadDocument(reqs(), metadata=md("ing-nord"), timeout=deadline)


@pytest.mark.parametrize("name", list(BOMBS))
async def test_container_bomb_is_refused_before_parsing(
    ctx: Ctx, tmp_path: Path, parses: list[str], name: str
) -> None:
    build, member = BOMBS[name]
    bomb = build(tmp_path / name)
    data = bomb.read_bytes()
    assert len(data) < 1 * MB  # a few hundred KB on the wire
    t0 = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _upload(ctx.ch, name, data, deadline=60)
    elapsed = time.monotonic() - t0
    reason, _ = details(err.value)
    assert (err.value.code(), reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CONTAINER_RATIO",
    ), err.value.details()
    message = err.value.details() or ""
    assert member in message and "200" in message, message  # the member and the limit
    assert elapsed < 20, elapsed  # behavioural bound; the check itself takes milliseconds
    assert name not in parses, parses  # never detected nor partitioned: nothing inflated

    # Nothing stored: the upload check refuses the container before any record is written.
    stub = ing_grpc.IngestionServiceStub(ctx.ch)
    docs = await stub.ListDocuments(
        ing_pb.ListDocumentsRequest(page_size=100), metadata=md("read-nord")
    )
    assert [d for d in docs.documents if d.filename == name] == []

    # The refusal is in the audit chain, for the caller's tenant (once: REJECTED by the
    # interceptor, with the RPC).
    audited = [
        r
        for r in ctx.audit.records(tenant="nord")
        if r.action in ("INGEST", "REJECTED") and r.outcome == "CONTAINER_RATIO"
    ]
    assert audited, "the refusal is not audited"
