"""Feedback on answers, stored in SQL (SQLite or PostgreSQL) next to the audit log.

One row per feedback; ``answer_audit_seq`` is the seq of the ANSWER audit record it is about.
The free comment lives only here (never in the audit chain: it may hold personal data and the
chain cannot be purged). The FEEDBACK audit record carries the rating, verdict, usage, minutes
and the answer seq, so the chain proves that a figure of the report was given by a key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from docfactory.core.db import Base
from docfactory.core.errors import AlreadyExists
from docfactory.core.migrate import ensure_schema
from docfactory.core.timeutil import utc, utcnow

USED_AS_IS = "USED_AS_IS"
EDITED = "EDITED"
DISCARDED = "DISCARDED"
USAGES = (USED_AS_IS, EDITED, DISCARDED)

LINK_AUDIT_SEQ = "AUDIT_SEQ"
LINK_REVIEW_ID = "REVIEW_ID"
LINK_LATEST_ANSWER = "LATEST_ANSWER"
LINK_RUN = "RUN"  # a signed dossier run (its DOSSIER_RELEASE audit record)


class FeedbackRow(Base):
    __tablename__ = "answer_feedback"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    tenant: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(128))
    use_case: Mapped[str] = mapped_column(String(128))
    answer_audit_seq: Mapped[int] = mapped_column(BigInteger)
    review_id: Mapped[str] = mapped_column(String(32), default="")
    link_method: Mapped[str] = mapped_column(String(16))
    useful: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    time_saved_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    usage: Mapped[str] = mapped_column(String(16), default="")
    feedback_audit_seq: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        UniqueConstraint("tenant", "key_id", "answer_audit_seq", name="uq_feedback_key_answer"),
        Index("ix_answer_feedback_tenant_time", "tenant", "time"),
    )


_FEEDBACK = cast(Table, FeedbackRow.__table__)


@dataclass(frozen=True)
class Feedback:
    id: str
    time: dt.datetime
    tenant: str
    key_id: str
    use_case: str
    answer_audit_seq: int
    review_id: str
    link_method: str
    useful: bool | None
    rating: int | None
    comment: str
    time_saved_minutes: float
    usage: str
    feedback_audit_seq: int = 0


def _to_feedback(row: Any) -> Feedback:
    return Feedback(
        id=row.id,
        time=utc(row.time),
        tenant=row.tenant,
        key_id=row.key_id,
        use_case=row.use_case,
        answer_audit_seq=int(row.answer_audit_seq),
        review_id=row.review_id or "",
        link_method=row.link_method,
        useful=row.useful,
        rating=row.rating,
        comment=row.comment or "",
        time_saved_minutes=float(row.time_saved_minutes or 0.0),
        usage=row.usage or "",
        feedback_audit_seq=int(row.feedback_audit_seq or 0),
    )


class FeedbackStore:
    def __init__(
        self,
        engine: Engine,
        *,
        create_tables: bool = True,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._clock = clock
        if create_tables:
            ensure_schema(engine)

    def new(self, **fields: Any) -> Feedback:
        """A feedback (not yet stored) with a fresh id and the current time."""
        return Feedback(id=uuid.uuid4().hex, time=utc(self._clock()), **fields)

    def add(self, fb: Feedback) -> Feedback:
        values = dict(fb.__dict__)
        try:
            with self._engine.begin() as conn:
                conn.execute(_FEEDBACK.insert().values(**values))
        except IntegrityError as exc:
            raise AlreadyExists(
                f"feedback on answer {fb.answer_audit_seq} was already given by this key",
                reason="FEEDBACK_ALREADY_GIVEN",
            ) from exc
        return fb

    def set_audit_seq(self, feedback_id: str, seq: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                _FEEDBACK.update()
                .where(_FEEDBACK.c.id == feedback_id)
                .values(feedback_audit_seq=seq)
            )

    def delete(self, feedback_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(_FEEDBACK.delete().where(_FEEDBACK.c.id == feedback_id))

    def get(self, feedback_id: str) -> Feedback | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(_FEEDBACK).where(_FEEDBACK.c.id == feedback_id)).first()
        return _to_feedback(row) if row is not None else None

    def items(
        self,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        tenant: str | None = None,
        use_case: str | None = None,
    ) -> Iterator[Feedback]:
        """Feedback with ``start <= time < end`` in time order."""
        query = select(_FEEDBACK)
        if start is not None:
            query = query.where(_FEEDBACK.c.time >= utc(start))
        if end is not None:
            query = query.where(_FEEDBACK.c.time < utc(end))
        if tenant is not None:
            query = query.where(_FEEDBACK.c.tenant == tenant)
        if use_case is not None:
            query = query.where(_FEEDBACK.c.use_case == use_case)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(_FEEDBACK.c.time, _FEEDBACK.c.id)).all()
        for row in rows:
            yield _to_feedback(row)
