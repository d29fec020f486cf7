"""``docfactory.common.v1.DocumentFilter`` <-> :class:`MetadataFilter`, validated.

The filter travels in SearchRequest / AnswerRequest (and in IndexService scopes) and becomes
payload conditions in every vector backend (``vectorstore``, ``vectorstore_edge``)."""

from __future__ import annotations

import re

from docfactory.common.v1 import common_pb2
from docfactory.core.errors import InvalidArgument
from docfactory.core.validation import shorten
from docfactory.core.vectorstore import MetadataFilter

_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_+-]{0,15}$")


def _tokens(values: list[str], field: str) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(values):
        v = v.strip().lower().lstrip(".")
        if not _TOKEN.match(v):
            raise InvalidArgument(
                f"filter.{field}[{i}]: {shorten(v, 16)} is not a valid value",
                reason="INVALID_FILTER",
                field_violations=[(f"filter.{field}[{i}]", "lowercase letters/digits, <= 16")],
            )
        out.append(v)
    if len(out) > 32:
        raise InvalidArgument(f"filter.{field}: at most 32 values", reason="INVALID_FILTER")
    return tuple(dict.fromkeys(out))


def filter_from_proto(f: common_pb2.DocumentFilter | None) -> MetadataFilter | None:
    if f is None:
        return None
    after = f.ingested_after.seconds if f.HasField("ingested_after") else None
    before = f.ingested_before.seconds if f.HasField("ingested_before") else None
    if after is not None and before is not None and after >= before:
        raise InvalidArgument(
            "filter.ingested_after must be earlier than filter.ingested_before",
            reason="INVALID_FILTER",
        )
    mf = MetadataFilter(
        file_types=_tokens(list(f.file_types), "file_types"),
        languages=_tokens(list(f.languages), "languages"),
        has_tables=f.has_tables if f.HasField("has_tables") else None,
        ocr=f.ocr if f.HasField("ocr") else None,
        ingested_after=after,
        ingested_before=before,
    )
    return mf or None


def filter_to_proto(mf: MetadataFilter | None) -> common_pb2.DocumentFilter | None:
    if not mf:
        return None
    out = common_pb2.DocumentFilter(file_types=list(mf.file_types), languages=list(mf.languages))
    if mf.has_tables is not None:
        out.has_tables = mf.has_tables
    if mf.ocr is not None:
        out.ocr = mf.ocr
    if mf.ingested_after is not None:
        out.ingested_after.seconds = mf.ingested_after
    if mf.ingested_before is not None:
        out.ingested_before.seconds = mf.ingested_before
    return out
