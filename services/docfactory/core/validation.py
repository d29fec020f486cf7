"""Request validation applied to every RPC before its handler runs (the interceptor calls it).

Generic rules, driven by the protobuf descriptors so a new field is covered the day it is added:

- every enum value must be one the enum declares (proto3 keeps unknown numbers silently);
- every float/double must be finite (NaN and infinities are refused);
- every 64-bit integer must fit a signed 64-bit column (SQLite and PostgreSQL ``BIGINT``);
- every ``google.protobuf.Timestamp`` must lie in 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
  with nanos in [0, 999999999] (what ``datetime`` and RFC 3339 can hold), every
  ``google.protobuf.Duration`` within +-10,000 years with nanos of the same sign;
- every string has a length cap, every repeated field and map a count cap, checked before any
  work; the default caps are overridden per field in :data:`FIELD_LIMITS`.

A violation raises :class:`~docfactory.core.errors.InvalidArgument` with a ``BadRequest`` field
violation naming the field path (``metadata.filename``) and reason ``REQUEST_FIELD_INVALID`` (or
``UNKNOWN_ENUM_VALUE`` / ``VALUE_OUT_OF_RANGE`` / ``INVALID_TIMESTAMP`` / ``INVALID_DURATION`` /
``FIELD_TOO_LONG`` / ``TOO_MANY_ITEMS``). Messages never echo caller input beyond a short prefix.

Document metadata supplied by a client has one cap (:data:`METADATA_LIMIT`), the same for the
upload and the update request fields; :func:`check_metadata` applies it to the paths that store a
document without a request of their own (dossier files, background and mail ingestion).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from docfactory.core.errors import InvalidArgument

#: Defaults for fields without an entry in :data:`FIELD_LIMITS`.
DEFAULT_MAX_STRING_CHARS = 4096
DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_MAP_ENTRIES = 256
MAX_MAP_KEY_CHARS = 256
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)

#: google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
#: google.protobuf.Duration: +-10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999

#: Document metadata supplied by a client (entries, characters per value).
MAX_METADATA_ENTRIES = 64
MAX_METADATA_VALUE_CHARS = 2_048


@dataclass(frozen=True)
class Limit:
    max_chars: int | None = None  # per string (per item of a repeated string)
    max_items: int | None = None  # repeated fields and maps
    max_total_chars: int | None = None  # sum over the items of a repeated string


#: The one cap of client-supplied document metadata: upload, update and every other path.
METADATA_LIMIT = Limit(max_items=MAX_METADATA_ENTRIES, max_chars=MAX_METADATA_VALUE_CHARS)

#: Per-field overrides, keyed by the field's full name (``package.Message.field``).
FIELD_LIMITS: dict[str, Limit] = {
    # Embedding: one request must not stall the model for every other caller.
    "docfactory.embedding.v1.EmbedRequest.texts": Limit(
        max_chars=16_384, max_items=512, max_total_chars=131_072
    ),
    "docfactory.embedding.v1.CountTokensRequest.texts": Limit(
        max_chars=65_536, max_items=512, max_total_chars=1_048_576
    ),
    # Questions and queries (the services cap them again at their own limits).
    "docfactory.answering.v1.SearchRequest.query": Limit(max_chars=4_000),
    "docfactory.answering.v1.AnswerRequest.question": Limit(max_chars=4_000),
    "docfactory.answering.v1.SearchRequest.collections": Limit(max_chars=128, max_items=100),
    "docfactory.answering.v1.AnswerRequest.collections": Limit(max_chars=128, max_items=100),
    "docfactory.answering.v1.SearchRequest.document_ids": Limit(max_chars=64, max_items=1_000),
    "docfactory.answering.v1.AnswerRequest.document_ids": Limit(max_chars=64, max_items=1_000),
    "docfactory.answering.v1.SearchRequest.use_case": Limit(max_chars=128),
    "docfactory.answering.v1.AnswerRequest.history": Limit(max_items=20),
    "docfactory.answering.v1.ConversationTurn.text": Limit(max_chars=8_000),
    "docfactory.answering.v1.AnswerRequest.use_case": Limit(max_chars=128),
    # Uploads and documents.
    "docfactory.ingestion.v1.UploadMetadata.filename": Limit(max_chars=1_024),
    "docfactory.ingestion.v1.UploadMetadata.collection": Limit(max_chars=128),
    "docfactory.ingestion.v1.UploadMetadata.source_uri": Limit(max_chars=2_048),
    "docfactory.ingestion.v1.UploadMetadata.metadata": METADATA_LIMIT,
    "docfactory.ingestion.v1.Document.metadata": METADATA_LIMIT,  # UpdateDocumentRequest
    "docfactory.ingestion.v1.IngestPathRequest.paths": Limit(max_chars=4_096, max_items=1_000),
    "docfactory.ingestion.v1.IngestPathRequest.collection": Limit(max_chars=128),
    "docfactory.ingestion.v1.ListDocumentsRequest.collection": Limit(max_chars=128),
    "docfactory.jobs.v1.IngestPrefixRequest.bucket": Limit(max_chars=63),
    "docfactory.jobs.v1.IngestPrefixRequest.prefix": Limit(max_chars=1_024),
    "docfactory.jobs.v1.IngestPrefixRequest.collection": Limit(max_chars=128),
    # Chunking receives a parsed document from ingestion: a book is many long elements.
    "docfactory.chunking.v1.ChunkElementsRequest.elements": Limit(max_items=2_000_000),
    "docfactory.chunking.v1.Element.text": Limit(max_chars=8_000_000),
    "docfactory.chunking.v1.ChunkTextRequest.text": Limit(max_chars=64_000_000),
    # Governance: an amended answer may be long; a comment is a comment.
    "docfactory.governance.v1.DecideReviewRequest.amended_text": Limit(max_chars=100_000),
    "docfactory.measurement.v1.SubmitFeedbackRequest.comment": Limit(max_chars=4_000),
    # Internal index: batches of points with their vectors.
    "docfactory.index.v1.UpsertPointsRequest.points": Limit(max_items=4_096),
    "docfactory.index.v1.Point.dense": Limit(max_items=16_384),
    "docfactory.index.v1.QueryPointsRequest.dense": Limit(max_items=16_384),
    "docfactory.index.v1.SparseVector.indices": Limit(max_items=100_000),
    "docfactory.index.v1.SparseVector.values": Limit(max_items=100_000),
    "docfactory.index.v1.Scope.document_ids": Limit(max_chars=64, max_items=10_000),
}

#: Fields whose numbers are free-form by design (none today); enum checks skip them.
_OPEN_ENUMS: frozenset[str] = frozenset()

# Struct/Value payloads (google.protobuf) carry arbitrary JSON: only size-checked.
_WELL_KNOWN_STRUCTS = (
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
)
_MAP_KEY_LIMIT = Limit(max_chars=MAX_MAP_KEY_CHARS)
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


def shorten(value: object, limit: int = 48) -> str:
    """A caller-supplied value fit for an error message: a short prefix, never the whole."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text[: limit + 1])
    if len(text) > limit:
        return repr(text[:limit]) + "…"
    return repr(text)


class _Violation(Exception):
    def __init__(self, field: str, description: str, reason: str) -> None:
        super().__init__(description)
        self.field = field
        self.description = description
        self.reason = reason


def _limit(fd: FieldDescriptor) -> Limit:
    return FIELD_LIMITS.get(fd.full_name, Limit())


def _check_scalar(fd: FieldDescriptor, value: object, path: str, lim: Limit) -> None:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        assert isinstance(value, str)
        _check_chars(value, path, lim.max_chars or DEFAULT_MAX_STRING_CHARS)
    elif t == FieldDescriptor.TYPE_ENUM:
        if fd.full_name in _OPEN_ENUMS:
            return
        assert fd.enum_type is not None
        if value not in fd.enum_type.values_by_number:
            allowed = ", ".join(v.name for v in fd.enum_type.values)
            raise _Violation(
                path,
                f"{path}: unknown value {shorten(value, 12)} (one of {allowed})",
                "UNKNOWN_ENUM_VALUE",
            )
    elif t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        assert isinstance(value, float | int)
        if not math.isfinite(value):
            raise _Violation(path, f"{path} must be a finite number", "VALUE_OUT_OF_RANGE")
    elif t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        assert isinstance(value, int)
        if value > MAX_INT64:
            raise _Violation(path, f"{path} must be at most {MAX_INT64}", "VALUE_OUT_OF_RANGE")


def _check_timestamp(seconds: int, nanos: int, prefix: str) -> None:
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        path = f"{prefix}seconds"
        raise _Violation(
            path,
            f"{path} must lie in [{MIN_TIMESTAMP_SECONDS}, {MAX_TIMESTAMP_SECONDS}] "
            "(0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z)",
            "INVALID_TIMESTAMP",
        )
    if not 0 <= nanos <= MAX_NANOS:
        path = f"{prefix}nanos"
        raise _Violation(path, f"{path} must lie in [0, {MAX_NANOS}]", "INVALID_TIMESTAMP")


def _check_duration(seconds: int, nanos: int, prefix: str) -> None:
    if not -MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS:
        path = f"{prefix}seconds"
        raise _Violation(
            path,
            f"{path} must lie in [-{MAX_DURATION_SECONDS}, {MAX_DURATION_SECONDS}]",
            "INVALID_DURATION",
        )
    mixed_signs = seconds != 0 and nanos != 0 and (seconds < 0) != (nanos < 0)
    if not -MAX_NANOS <= nanos <= MAX_NANOS or mixed_signs:
        path = f"{prefix}nanos"
        raise _Violation(
            path,
            f"{path} must lie in [-{MAX_NANOS}, {MAX_NANOS}] with the sign of seconds",
            "INVALID_DURATION",
        )


def _check_chars(value: str, path: str, cap: int) -> None:
    if len(value) > cap:
        raise _Violation(
            path, f"{path} is {len(value)} characters long; at most {cap}", "FIELD_TOO_LONG"
        )


def _check_entries(count: int, path: str, lim: Limit) -> None:
    cap = lim.max_items or DEFAULT_MAX_MAP_ENTRIES
    if count > cap:
        raise _Violation(path, f"{path} has {count} entries; at most {cap}", "TOO_MANY_ITEMS")


def _walk(msg: Message, prefix: str, depth: int) -> None:
    if depth > 32:
        raise _Violation(prefix or "request", "request nested too deeply", "REQUEST_TOO_DEEP")
    desc = msg.DESCRIPTOR
    if desc.full_name in _WELL_KNOWN_STRUCTS:
        return
    if desc.full_name == _TIMESTAMP:
        _check_timestamp(msg.seconds, msg.nanos, prefix)  # type: ignore[attr-defined]
        return
    if desc.full_name == _DURATION:
        _check_duration(msg.seconds, msg.nanos, prefix)  # type: ignore[attr-defined]
        return
    for fd, value in msg.ListFields():
        path = f"{prefix}{fd.name}"
        lim = _limit(fd)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            assert isinstance(value, Mapping)
            _check_entries(len(value), path, lim)
            key_fd = fd.message_type.fields_by_name["key"]
            val_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                _check_scalar(key_fd, k, f"{path}[key]", _MAP_KEY_LIMIT)
                if val_fd.message_type is not None:
                    _walk(v, f"{path}[{shorten(k, 16)}].", depth + 1)
                else:
                    _check_scalar(val_fd, v, f"{path}[{shorten(k, 16)}]", lim)
            continue
        if fd.is_repeated:
            items = list(value)
            cap = lim.max_items or DEFAULT_MAX_ITEMS
            if len(items) > cap:
                raise _Violation(
                    path, f"{path} has {len(items)} items; at most {cap}", "TOO_MANY_ITEMS"
                )
            if fd.message_type is not None:
                for i, item in enumerate(items):
                    _walk(item, f"{path}[{i}].", depth + 1)
                continue
            total = 0
            for i, item in enumerate(items):
                _check_scalar(fd, item, f"{path}[{i}]", lim)
                if isinstance(item, str):
                    total += len(item)
            if lim.max_total_chars is not None and total > lim.max_total_chars:
                raise _Violation(
                    path,
                    f"{path} holds {total} characters in all; at most {lim.max_total_chars}",
                    "FIELD_TOO_LONG",
                )
            continue
        if fd.message_type is not None:
            _walk(value, f"{path}.", depth + 1)
        else:
            _check_scalar(fd, value, path, lim)


def _error(v: _Violation) -> InvalidArgument:
    return InvalidArgument(
        v.description,
        reason=v.reason,
        metadata={"field": v.field[:128]},
        field_violations=[(v.field[:256], v.description)],
    )


def validate_request(msg: Message) -> None:
    """Raise InvalidArgument (with a BadRequest field violation) when ``msg`` breaks a rule."""
    try:
        _walk(msg, "", 0)
    except _Violation as v:
        raise _error(v) from None


def check_metadata(metadata: Mapping[str, str], path: str = "metadata") -> None:
    """Client-supplied document metadata within :data:`METADATA_LIMIT` (the rule a request field
    declared with it gets), for the paths that store a document without such a request."""
    try:
        _check_entries(len(metadata), path, METADATA_LIMIT)
        for k, v in metadata.items():
            _check_chars(k, f"{path}[key]", MAX_MAP_KEY_CHARS)
            _check_chars(v, f"{path}[{shorten(k, 16)}]", METADATA_LIMIT.max_chars or 0)
    except _Violation as v:
        raise _error(v) from None


def check_timestamp(seconds: int, nanos: int, path: str) -> None:
    """A timestamp within what ``google.protobuf.Timestamp`` (and ``datetime``) can hold, for a
    value converted outside :func:`validate_request`; ``path`` names the field."""
    try:
        _check_timestamp(seconds, nanos, f"{path}.")
    except _Violation as v:
        raise _error(v) from None
