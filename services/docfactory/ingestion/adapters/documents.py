"""Document metadata store (SQLAlchemy: SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from docfactory.core.db import Base
from docfactory.core.migrate import ensure_schema

PROCESSING = "PROCESSING"
INDEXED = "INDEXED"
FAILED = "FAILED"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DocumentRecord:
    tenant: str
    document_id: str
    collection: str
    filename: str
    source_uri: str
    sha256: str = ""
    version: int = 0
    classification: int = 2
    state: str = PROCESSING
    mime_type: str = ""
    page_count: int = 0
    chunk_count: int = 0
    size_bytes: int = 0
    error_reason: str = ""
    error_message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=_now)
    updated_at: dt.datetime = field(default_factory=_now)

    def evolve(self, **changes: Any) -> DocumentRecord:
        return replace(self, updated_at=_now(), **changes)


class DocumentRow(Base):
    __tablename__ = "documents"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collection: Mapped[str] = mapped_column(String(256))
    filename: Mapped[str] = mapped_column(String(1024))
    source_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    classification: Mapped[int] = mapped_column(Integer, default=2)
    state: Mapped[str] = mapped_column(String(16))
    mime_type: Mapped[str] = mapped_column(String(128), default="")
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    error_reason: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_documents_tenant_collection", "tenant", "collection"),
        Index("ix_documents_tenant_updated", "tenant", "updated_at"),
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _to_record(row: DocumentRow) -> DocumentRecord:
    return DocumentRecord(
        tenant=row.tenant,
        document_id=row.document_id,
        collection=row.collection,
        filename=row.filename,
        source_uri=row.source_uri,
        sha256=row.sha256,
        version=row.version,
        classification=row.classification,
        state=row.state,
        mime_type=row.mime_type,
        page_count=row.page_count,
        chunk_count=row.chunk_count,
        size_bytes=row.size_bytes,
        error_reason=row.error_reason,
        error_message=row.error_message,
        metadata=dict(row.meta or {}),
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


class DocumentRepository(Protocol):
    def get(self, tenant: str, document_id: str) -> DocumentRecord | None: ...
    def save(self, record: DocumentRecord) -> None: ...
    def delete(self, tenant: str, document_id: str) -> bool: ...
    def list(
        self,
        tenant: str,
        *,
        collection: str = "",
        state: str = "",
        offset: int = 0,
        limit: int = 50,
        after: tuple[dt.datetime, str] | None = None,
    ) -> tuple[Sequence[DocumentRecord], int]: ...


class SqlDocumentRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        ensure_schema(engine)

    def get(self, tenant: str, document_id: str) -> DocumentRecord | None:
        with Session(self._engine) as s:
            row = s.get(DocumentRow, (tenant, document_id))
            return _to_record(row) if row else None

    def save(self, record: DocumentRecord) -> None:
        with Session(self._engine) as s, s.begin():
            row = s.get(DocumentRow, (record.tenant, record.document_id))
            if row is None:
                row = DocumentRow(tenant=record.tenant, document_id=record.document_id)
                s.add(row)
            row.collection = record.collection
            row.filename = record.filename
            row.source_uri = record.source_uri
            row.sha256 = record.sha256
            row.version = record.version
            row.classification = record.classification
            row.state = record.state
            row.mime_type = record.mime_type
            row.page_count = record.page_count
            row.chunk_count = record.chunk_count
            row.size_bytes = record.size_bytes
            row.error_reason = record.error_reason
            row.error_message = record.error_message
            row.meta = dict(record.metadata)
            row.created_at = record.created_at
            row.updated_at = record.updated_at

    def delete(self, tenant: str, document_id: str) -> bool:
        with Session(self._engine) as s, s.begin():
            row = s.get(DocumentRow, (tenant, document_id))
            if row is None:
                return False
            s.delete(row)
            return True

    def list(
        self,
        tenant: str,
        *,
        collection: str = "",
        state: str = "",
        offset: int = 0,
        limit: int = 50,
        after: tuple[dt.datetime, str] | None = None,
    ) -> tuple[Sequence[DocumentRecord], int]:
        """Newest first (``updated_at`` desc, then id). ``after``: the (updated_at, id) of the
        last row of the previous page (keyset pagination, stable under inserts)."""
        q = select(DocumentRow).where(DocumentRow.tenant == tenant)
        if collection:
            q = q.where(DocumentRow.collection == collection)
        if state:
            q = q.where(DocumentRow.state == state)
        with Session(self._engine) as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            if after is not None:
                ts, doc_id = after
                q = q.where(
                    or_(
                        DocumentRow.updated_at < ts,
                        and_(DocumentRow.updated_at == ts, DocumentRow.document_id > doc_id),
                    )
                )
            rows = s.scalars(
                q.order_by(DocumentRow.updated_at.desc(), DocumentRow.document_id)
                .offset(offset)
                .limit(limit)
            ).all()
            return [_to_record(r) for r in rows], int(total)
