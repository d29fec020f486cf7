"""Ingestion domain: parse -> chunk -> embed -> index, with document records and versions.

Effects are idempotent: a document id is derived from (tenant, collection, source URI), chunk ids
from (document id, version, index), so re-processing the same version rewrites the same points.
A new version's points are written before the previous version's are removed, and a failed
re-ingestion never touches the version that is already indexed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from docfactory import pii
from docfactory.core import metrics, tracing
from docfactory.core.auth import Principal, principal_or_none
from docfactory.core.config import Settings
from docfactory.core.errors import (
    DocfactoryError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from docfactory.core.lexical import SparseEncoder, detect_language
from docfactory.core.pagination import next_page, page_request
from docfactory.core.validation import check_metadata, shorten
from docfactory.core.vectorstore import ChunkPoint, Sparse, VectorStore, document_id_for
from docfactory.ingestion.adapters.documents import (
    FAILED,
    INDEXED,
    PROCESSING,
    DocumentRecord,
    DocumentRepository,
)
from docfactory.ingestion.adapters.parser import (
    ParsedDocument,
    ParsedElement,
    Parser,
    burst_processes,
    check_document_container,
    container_limits,
)
from docfactory.ingestion.contracts import (
    BackgroundSubmitter,
    BackgroundUpload,
    validate_collection,
)

if TYPE_CHECKING:
    from docfactory.governance.gate import GovernanceGate

CLASSIFICATIONS = {1: "PUBLIC", 2: "INTERNAL", 3: "CONFIDENTIAL", 4: "RESTRICTED"}


@dataclass(frozen=True)
class ChunkData:
    id: str
    index: int
    text: str
    page_numbers: tuple[int, ...]
    section_path: tuple[str, ...]
    element_types: tuple[str, ...]
    token_count: int


class ChunkerClient(Protocol):
    async def chunk(
        self, document_id: str, version: int, elements: Sequence[ParsedElement]
    ) -> list[ChunkData]: ...


class EmbedderClient(Protocol):
    async def embed_passages(self, texts: Sequence[str]) -> tuple[list[list[float]], int]: ...


@dataclass(frozen=True)
class IngestResult:
    record: DocumentRecord
    unchanged: bool
    error: DocfactoryError | None = None


MAX_FILENAME_CHARS = 255
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}:")
#: Schemes a client may not claim: they name places on docfactory's own side.
RESERVED_SCHEMES = frozenset({"file", "data", "javascript"})


def normalize_filename(filename: str) -> str:
    """The name docfactory stores and shows for an upload: the last path component, without
    control or format characters, at most 255 characters (the extension kept)."""
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        raise InvalidArgument(
            f"invalid filename {shorten(filename)}: it needs a name after the last '/'",
            reason="INVALID_FILENAME",
        )
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name


def validate_source_uri(uri: str) -> str:
    """A client-declared source URI: the client's identifier of the document (re-uploading the
    same URI makes a new version). It must be a URI (``scheme:...``), without control
    characters, at most 2,048 characters, and not use a scheme reserved to the server
    (``file:`` names the server's disk and is set only by IngestPath). ``upload:`` is what the
    server assigns when the client gives none (a background upload's worker sends it back)."""
    if len(uri) > 2048 or any(unicodedata.category(ch)[0] == "C" for ch in uri):
        raise InvalidArgument(
            f"invalid source_uri {shorten(uri)}: at most 2048 characters, no control characters",
            reason="INVALID_SOURCE_URI",
        )
    m = _URI_SCHEME.match(uri)
    if m is None:
        raise InvalidArgument(
            f"invalid source_uri {shorten(uri)}: expected a URI such as "
            "'ged://dossiers/123' or 's3://bucket/key'",
            reason="INVALID_SOURCE_URI",
        )
    if m.group(0)[:-1].lower() in RESERVED_SCHEMES:
        raise InvalidArgument(
            f"source_uri scheme {m.group(0)!r} is reserved to the server (use e.g. 'local:' "
            "for a file of the client's own disk)",
            reason="SOURCE_URI_NOT_ALLOWED",
        )
    return uri


def validate_classification(value: int) -> int:
    value = value or 2
    if value not in CLASSIFICATIONS:
        raise InvalidArgument(f"unknown classification {value}", reason="INVALID_CLASSIFICATION")
    return value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _walk(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            )
        elif p.is_file():
            files.append(p)
        else:
            raise NotFound(
                f"path not found or not readable: {shorten(raw, 120)}", reason="PATH_NOT_FOUND"
            )
    return files


def scrub_paths(err: DocfactoryError, path: Path, filename: str) -> DocfactoryError:
    """Replace the server-side path of a staged file by the document's name in an error
    message (a parser's exception text often carries it): clients never see server paths."""
    for p in (str(path), str(path.parent)):
        if p and p != "." and p in err.message:
            err.message = err.message.replace(p, filename if p == str(path) else "…")
    return err


#: Fields UpdateDocument may change, and those it refuses by name.
MUTABLE_FIELDS = frozenset({"classification", "metadata"})
IMMUTABLE_FIELDS = frozenset(
    {
        "name",
        "document_id",
        "collection",
        "filename",
        "source_uri",
        "sha256",
        "version",
        "state",
        "mime_type",
        "page_count",
        "chunk_count",
        "error_reason",
        "error_message",
        "create_time",
        "update_time",
        "size_bytes",
    }
)


#: Roles that may make the server read its own disk (IngestPath).
PATH_ROLES = frozenset({"ingester", "admin"})


def allowed_files(paths: Sequence[str], roots: Sequence[str]) -> list[Path]:
    """The files IngestPath may read: every path, and every file found under a folder, must
    have its real path (symlinks and '..' resolved) under one of ``roots``; the real paths are
    returned, so what is read is what was checked."""
    real_roots = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]

    def inside(p: Path) -> bool:
        return any(p == r or r in p.parents for r in real_roots)

    for raw in paths:
        if "\x00" in raw or not inside(Path(os.path.realpath(Path(raw).expanduser()))):
            raise PermissionDenied(
                f"path {shorten(raw, 120)} is outside the folders IngestPath may read "
                "(DOCFACTORY_INGEST_PATH_ROOTS)",
                reason="PATH_NOT_ALLOWED",
            )
    files = []
    for f in _walk(paths):
        real = Path(os.path.realpath(f))
        if not inside(real):
            raise PermissionDenied(
                f"{shorten(f.name)} links outside the folders IngestPath may read",
                reason="PATH_NOT_ALLOWED",
            )
        files.append(real)
    return files


class IngestionService:
    def __init__(
        self,
        *,
        settings: Settings,
        repo: DocumentRepository,
        parser: Parser,
        chunker: ChunkerClient,
        embedder: EmbedderClient,
        store: VectorStore,
        sparse: SparseEncoder | None = None,
        governance: GovernanceGate | None = None,
    ) -> None:
        self._gov = governance
        self._settings = settings
        self._repo = repo
        self._parser = parser
        self._chunker = chunker
        self._embedder = embedder
        self._store = store
        self._sparse = sparse or SparseEncoder()
        parsing = settings.parsing
        self._parse_slots = asyncio.Semaphore(
            max(
                1,
                parsing.max_concurrent_parses,
                parsing.parse_processes or burst_processes(parsing.burst_parse_processes),
            )
        )
        # One ingestion at a time per document id within this process.
        self._doc_locks: dict[str, asyncio.Lock] = {}

    # -- queries -----------------------------------------------------------------------
    async def get(self, tenant: str, document_id: str) -> DocumentRecord:
        rec = await asyncio.to_thread(self._repo.get, tenant, document_id)
        if rec is None:
            raise NotFound(f"document {document_id} not found", reason="DOCUMENT_NOT_FOUND")
        return rec

    async def list(
        self,
        tenant: str,
        *,
        collection: str,
        state: str,
        page_size: int,
        page_token: str,
    ) -> tuple[list[DocumentRecord], str, int]:
        """A page of the tenant's documents, newest first: (documents, next_page_token, total).
        Keyset on (updated_at, document_id): stable while documents are being added."""
        req = page_request(
            page_size,
            page_token,
            fingerprint=f"docs|{collection}|{state}",
            parse=lambda k: (dt.datetime.fromisoformat(k[0]), k[1]),
        )
        records, total = await asyncio.to_thread(
            lambda: self._repo.list(
                tenant, collection=collection, state=state, limit=req.size + 1, after=req.after
            )
        )
        page, token = next_page(records, req, lambda r: [r.updated_at.isoformat(), r.document_id])
        return page, token, total

    async def update(
        self,
        tenant: str,
        document_id: str,
        paths: Sequence[str],
        *,
        classification: int = 0,
        metadata: Mapping[str, str] | None = None,
    ) -> DocumentRecord:
        """Update the mutable fields named in ``paths`` (an AIP-134 field mask). A new
        classification is written to the document's vector payloads first (no re-embedding),
        then to its record; both under the document's lock, audited as ``UPDATE``."""
        if not paths:
            raise InvalidArgument(
                "update_mask is required (fields: classification, metadata)",
                reason="UPDATE_MASK_REQUIRED",
            )
        for path in paths:
            if path in IMMUTABLE_FIELDS:
                raise InvalidArgument(
                    f"{shorten(path)} cannot be updated (mutable: classification, metadata)",
                    reason="IMMUTABLE_FIELD",
                    field_violations=[(f"update_mask.paths[{path[:64]}]", "immutable")],
                )
            if path not in MUTABLE_FIELDS:
                raise InvalidArgument(
                    f"unknown field {shorten(path)} in update_mask (mutable: classification, "
                    "metadata)",
                    reason="UNKNOWN_FIELD_MASK_PATH",
                    field_violations=[(f"update_mask.paths[{path[:64]}]", "unknown field")],
                )
        if "classification" in paths and classification not in CLASSIFICATIONS:
            raise InvalidArgument(
                "classification must be set (1 PUBLIC .. 4 RESTRICTED) when in update_mask",
                reason="INVALID_CLASSIFICATION",
            )
        if "metadata" in paths:
            # The cap of an upload's metadata (one declaration: validation.METADATA_LIMIT).
            check_metadata(metadata or {}, "document.metadata")
        await self.get(tenant, document_id)
        async with self._lock_for(tenant, document_id):
            rec = await self.get(tenant, document_id)
            if rec.state == PROCESSING:
                raise FailedPrecondition(
                    "the document is being processed; update it once it is indexed",
                    reason="DOCUMENT_PROCESSING",
                )
            changes: dict[str, Any] = {}
            points = 0
            if "classification" in paths and classification != rec.classification:
                points = await asyncio.to_thread(
                    self._store.set_classification, tenant, document_id, classification
                )
                changes["classification"] = classification
            if "metadata" in paths:
                changes["metadata"] = dict(metadata or {})
            updated = rec.evolve(**changes) if changes else rec
            if changes:
                await asyncio.to_thread(self._repo.save, updated)
        await asyncio.to_thread(
            self._audit,
            tenant,
            "UPDATE",
            "OK",
            document_id,
            fields=sorted(set(paths)),
            classification=updated.classification,
            points=points,
        )
        return updated

    async def delete(self, tenant: str, document_id: str) -> int:
        await self.get(tenant, document_id)
        async with self._lock_for(tenant, document_id):
            removed = await asyncio.to_thread(self._store.delete_document, tenant, document_id)
            await asyncio.to_thread(self._repo.delete, tenant, document_id)
        await asyncio.to_thread(self._audit, tenant, "DELETE", "OK", document_id, chunks=removed)
        return removed

    def _audit(
        self, tenant: str, action: str, outcome: str, document_id: str, **details: Any
    ) -> None:
        if self._gov is None:
            return
        principal = principal_or_none() or Principal(tenant=tenant, key_id="in-process", api_key="")
        self._gov.record(
            principal,
            action=action,
            outcome=outcome,
            document_ids=[document_id] if document_id else [],
            details=details,
        )

    def _lock_for(self, tenant: str, document_id: str) -> asyncio.Lock:
        key = f"{tenant}/{document_id}"
        lock = self._doc_locks.get(key)
        if lock is None:
            lock = self._doc_locks[key] = asyncio.Lock()
        return lock

    # -- ingestion ---------------------------------------------------------------------
    async def _check_upload(
        self,
        path: Path,
        filename: str,
        collection: str,
        classification: int,
        source_uri: str,
        *,
        server_source: bool = False,
    ) -> tuple[str, int, int, str, str]:
        """Validated (collection, classification, size, source URI, filename) of an upload.
        ``server_source``: the URI was made by the server (IngestPath), not claimed by a
        client."""
        collection = validate_collection(collection)
        classification = validate_classification(classification)
        if not filename:
            raise InvalidArgument("filename is required", reason="FILENAME_REQUIRED")
        filename = normalize_filename(filename)
        if source_uri and not server_source:
            source_uri = validate_source_uri(source_uri)
        size = (await asyncio.to_thread(path.stat)).st_size
        if size > self._settings.parsing.max_file_bytes:
            raise InvalidArgument(
                f"{shorten(filename)}: {size} bytes exceeds the limit of "
                f"{self._settings.parsing.max_file_bytes}",
                reason="FILE_TOO_LARGE",
            )
        # A zip-based document over the archive limits is refused before anything is stored
        # or inflated (an OOXML/ODF/EPUB bomb), on every path that stores a document.
        await asyncio.to_thread(
            check_document_container, path, filename, container_limits(self._settings.jobs)
        )
        return (
            collection,
            classification,
            size,
            source_uri or f"upload://{collection}/{filename}",
            filename,
        )

    async def submit_background(
        self,
        submitter: BackgroundSubmitter | None,
        *,
        tenant: str,
        path: Path,
        filename: str,
        collection: str = "",
        classification: int = 0,
        metadata: Mapping[str, str] | None = None,
        source_uri: str = "",
    ) -> tuple[DocumentRecord, str]:
        """Validate an upload like :meth:`ingest_file`, then hand it to the jobs layer.
        Returns the document as known so far (state PROCESSING) and the job id."""
        if submitter is None:
            raise FailedPrecondition(
                "background uploads need the jobs service (a database for DBOS and workers: "
                "`docfactory worker`, or `docfactory serve --workers N`)",
                reason="BACKGROUND_UNAVAILABLE",
            )
        check_metadata(metadata or {})
        collection, classification, size, source_uri, filename = await self._check_upload(
            path, filename, collection, classification, source_uri
        )
        doc_id = document_id_for(tenant, collection, source_uri)
        job_id = await submitter.submit_upload(
            BackgroundUpload(
                tenant=tenant,
                path=path,
                filename=filename,
                collection=collection,
                classification=classification,
                metadata=dict(metadata or {}),
                source_uri=source_uri,
                document_id=doc_id,
            )
        )
        await asyncio.to_thread(
            self._audit, tenant, "INGEST", "QUEUED", doc_id, filename=filename, job=job_id
        )
        previous = await asyncio.to_thread(self._repo.get, tenant, doc_id)
        record = DocumentRecord(
            tenant=tenant,
            document_id=doc_id,
            collection=collection,
            filename=filename,
            source_uri=source_uri,
            classification=classification,
            version=previous.version if previous is not None else 0,
            state=PROCESSING,
            size_bytes=size,
            metadata=dict(metadata or {}),
        )
        return record, job_id

    async def ingest_file(
        self,
        *,
        tenant: str,
        path: Path,
        filename: str,
        collection: str = "",
        classification: int = 0,
        metadata: Mapping[str, str] | None = None,
        source_uri: str = "",
        server_source: bool = False,
        on_parsed: Callable[[ParsedDocument], None] | None = None,
    ) -> IngestResult:
        """Ingest one file. ``on_parsed`` sees the parsed document (e.g. the dossier service
        keeps its page texts) so that a caller needing the text never parses the file twice;
        it is not called when the file is unchanged (nothing is parsed then)."""
        try:
            result = await self._ingest_file(
                tenant=tenant,
                path=path,
                filename=filename,
                collection=collection,
                classification=classification,
                metadata=metadata,
                source_uri=source_uri,
                server_source=server_source,
                on_parsed=on_parsed,
            )
        except DocfactoryError as err:
            await asyncio.to_thread(
                self._audit, tenant, "INGEST", err.reason, "", filename=filename[:255]
            )
            raise
        outcome = (
            result.error.reason if result.error else ("UNCHANGED" if result.unchanged else "OK")
        )
        await asyncio.to_thread(
            self._audit,
            tenant,
            "INGEST",
            outcome,
            result.record.document_id,
            filename=filename,
            version=result.record.version,
            classification=result.record.classification,
        )
        return result

    async def _ingest_file(
        self,
        *,
        tenant: str,
        path: Path,
        filename: str,
        collection: str = "",
        classification: int = 0,
        metadata: Mapping[str, str] | None = None,
        source_uri: str = "",
        server_source: bool = False,
        on_parsed: Callable[[ParsedDocument], None] | None = None,
    ) -> IngestResult:
        # Every path that stores a document (upload, dossier files, background, mail) has the
        # same metadata cap as UploadMetadata.metadata.
        check_metadata(metadata or {})
        collection, classification, size, source_uri, filename = await self._check_upload(
            path, filename, collection, classification, source_uri, server_source=server_source
        )
        doc_id = document_id_for(tenant, collection, source_uri)
        digest = await asyncio.to_thread(sha256_file, path)
        async with self._lock_for(tenant, doc_id):
            previous = await asyncio.to_thread(self._repo.get, tenant, doc_id)
            if (
                previous is not None
                and previous.state == INDEXED
                and previous.sha256 == digest
                and previous.classification == classification
            ):
                metrics.DOCUMENTS_INGESTED.labels("unchanged", tenant).inc()
                return IngestResult(previous, unchanged=True)
            version = (previous.version if previous else 0) + (
                0
                if previous is not None and previous.sha256 == digest and previous.state == INDEXED
                else 1
            )
            base = previous or DocumentRecord(
                tenant=tenant,
                document_id=doc_id,
                collection=collection,
                filename=filename,
                source_uri=source_uri,
            )
            try:
                record = await self._process(
                    base,
                    path,
                    filename,
                    digest,
                    version,
                    classification,
                    size,
                    metadata or {},
                    on_parsed,
                )
            except DocfactoryError as err:
                scrub_paths(err, path, filename)
                metrics.DOCUMENTS_INGESTED.labels("failed", tenant).inc()
                if previous is not None and previous.state == INDEXED:
                    # Keep serving the version that is already indexed, untouched.
                    raise
                failed = base.evolve(
                    sha256=digest,
                    version=version,
                    classification=classification,
                    state=FAILED,
                    size_bytes=size,
                    error_reason=err.reason,
                    error_message=err.message,
                    metadata=dict(metadata or {}),
                    chunk_count=0,
                )
                await asyncio.to_thread(self._repo.save, failed)
                return IngestResult(failed, unchanged=False, error=err)
            metrics.DOCUMENTS_INGESTED.labels("indexed", tenant).inc()
            return IngestResult(record, unchanged=False)

    async def _process(
        self,
        base: DocumentRecord,
        path: Path,
        filename: str,
        digest: str,
        version: int,
        classification: int,
        size: int,
        metadata: Mapping[str, str],
        on_parsed: Callable[[ParsedDocument], None] | None = None,
    ) -> DocumentRecord:
        tenant = base.tenant
        t0 = time.perf_counter()
        with tracing.span("parse"):
            async with self._parse_slots:
                parsed = await asyncio.to_thread(self._parser.parse, path, filename)
        t1 = time.perf_counter()
        metrics.INGEST_STAGE_SECONDS.labels("parse").observe(t1 - t0)
        metrics.PAGES_INGESTED.labels(tenant).inc(parsed.page_count or 1)
        if on_parsed is not None:
            on_parsed(parsed)
        with tracing.span("chunk"):
            chunks = await self._chunker.chunk(base.document_id, version, parsed.elements)
        t2 = time.perf_counter()
        metrics.INGEST_STAGE_SECONDS.labels("chunk").observe(t2 - t1)
        if not chunks:
            raise InvalidArgument(f"{filename}: no chunk produced", reason="NO_CHUNKS")
        # Personal data (policy `pii`): findings per chunk; redacted before embedding if asked.
        chunks, found = await pii.process_chunks(self._gov, tenant, base.collection, chunks)
        with tracing.span("embed"):
            vectors, dim = await self._embedder.embed_passages([c.text for c in chunks])
        t3 = time.perf_counter()
        metrics.INGEST_STAGE_SECONDS.labels("embed").observe(t3 - t2)
        points = []
        # Document metadata searchable through DocumentFilter (file type, OCR, ingestion time);
        # per chunk: language and whether it holds a table.
        file_type = Path(filename).suffix.lower().lstrip(".")[:16]
        ocr_used = "ocr" in parsed.strategy
        ingested_at = int(time.time())
        for c, vec in zip(chunks, vectors, strict=True):
            language = detect_language(c.text)
            sv = self._sparse.encode_document(c.text, language)
            points.append(
                ChunkPoint(
                    id=c.id,
                    dense=vec,
                    sparse=Sparse(sv.indices, sv.values),
                    payload={
                        "tenant": tenant,
                        "collection": base.collection,
                        "document_id": base.document_id,
                        "document_version": version,
                        "classification": classification,
                        "filename": filename,
                        "source_uri": base.source_uri,
                        "chunk_index": c.index,
                        "page_numbers": list(c.page_numbers),
                        "section_path": list(c.section_path),
                        "element_types": list(c.element_types),
                        "token_count": c.token_count,
                        "text": c.text,
                        "file_type": file_type,
                        "language": language,
                        # 0/1, not booleans: the embedded engine matches integers only.
                        "has_table": int("Table" in c.element_types),
                        "ocr": int(ocr_used),
                        "ingested_at": ingested_at,
                        **found.payload(c.id),
                    },
                )
            )
        processing = base.evolve(state=PROCESSING) if base.state != INDEXED else base
        if processing is not base:
            await asyncio.to_thread(self._repo.save, processing)
        with tracing.span("index"):
            await asyncio.to_thread(self._store.upsert, points, dim)
            # New version written; now drop every other version of this document.
            await asyncio.to_thread(self._store.delete_document, tenant, base.document_id, version)
        t4 = time.perf_counter()
        metrics.INGEST_STAGE_SECONDS.labels("index").observe(t4 - t3)
        metrics.CHUNKS_INDEXED.labels(tenant).inc(len(points))
        record = base.evolve(
            filename=filename,
            sha256=digest,
            version=version,
            classification=classification,
            state=INDEXED,
            mime_type=parsed.mime_type,
            page_count=parsed.page_count,
            chunk_count=len(points),
            size_bytes=size,
            error_reason="",
            error_message="",
            metadata=found.metadata({**parsed.metadata, **metadata}),
        )
        await asyncio.to_thread(self._repo.save, record)
        return record

    async def ingest_paths(
        self,
        *,
        tenant: str,
        paths: Sequence[str],
        collection: str = "",
        classification: int = 0,
    ) -> AsyncIterator[tuple[Path, IngestResult, int, int]]:
        roots = self._settings.parsing.ingest_path_roots
        if not roots:
            raise PermissionDenied(
                "IngestPath is disabled on this server (upload the documents instead, or ask "
                "the operator to set DOCFACTORY_INGEST_PATH_ROOTS)",
                reason="INGEST_PATH_DISABLED",
            )
        principal = principal_or_none()
        if principal is None or not (principal.roles & PATH_ROLES):
            raise PermissionDenied(
                "IngestPath needs a key with the ingester (or admin) role",
                reason="INGESTER_ROLE_REQUIRED",
            )
        files = await asyncio.to_thread(allowed_files, paths, roots)
        total = len(files)
        for i, f in enumerate(files, 1):
            try:
                result = await self.ingest_file(
                    tenant=tenant,
                    path=f,
                    filename=f.name,
                    collection=collection,
                    classification=classification,
                    source_uri=f.resolve().as_uri(),
                    server_source=True,
                )
            except DocfactoryError as err:
                # A previously indexed version stays; report the failure for this file.
                rec = DocumentRecord(
                    tenant=tenant,
                    document_id="",
                    collection=collection or "default",
                    filename=f.name,
                    source_uri=f.resolve().as_uri(),
                    state=FAILED,
                    error_reason=err.reason,
                    error_message=err.message,
                )
                result = IngestResult(rec, unchanged=False, error=err)
            yield f, result, i, total
