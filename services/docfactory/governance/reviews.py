"""Human review of answers: drafts held until a reviewer approves, amends or rejects them.

States: ``PENDING_REVIEW -> APPROVED | AMENDED | REJECTED`` (final). Only APPROVED (the draft
text) and AMENDED (the reviewer's text) answers are released. A decision is one conditional
``UPDATE ... WHERE state = 'PENDING_REVIEW'``: of two reviewers deciding at once, on any
replica, exactly one wins; the other gets FailedPrecondition REVIEW_ALREADY_DECIDED.

A reviewer may first *claim* a pending draft (``claim``): for ``ttl`` the claim is a lock, so
two reviewers do not work on the same item; another key's ``claim`` or ``decide`` then gets
FailedPrecondition REVIEW_CLAIMED (one conditional ``UPDATE``, race-free across replicas). An
expired claim no longer binds.

The caller checks the reviewer's role (``Policy.has_role(key_id, "reviewer")``); the store
enforces the four-eyes rule (a key cannot review its own request: PermissionDenied
SELF_REVIEW_FORBIDDEN) and tenant isolation (a review of another tenant is NotFound).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from docfactory.core.db import Base
from docfactory.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from docfactory.core.migrate import ensure_schema
from docfactory.core.timeutil import utc, utcnow
from docfactory.core.validation import shorten

PENDING_REVIEW = "PENDING_REVIEW"
APPROVED = "APPROVED"
AMENDED = "AMENDED"
REJECTED = "REJECTED"
DECISIONS = (APPROVED, AMENDED, REJECTED)
RELEASED = (APPROVED, AMENDED)


class ReviewRow(Base):
    __tablename__ = "review_drafts"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    review_id: Mapped[str] = mapped_column(String(32), unique=True)
    tenant: Mapped[str] = mapped_column(String(128))
    use_case: Mapped[str] = mapped_column(String(128))
    requester_key_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    answer_text: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(256), default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    reviewer_key_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    amended_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )

    __table_args__ = (Index("ix_review_drafts_tenant_state_seq", "tenant", "state", "seq"),)


_REVIEWS = cast(Table, ReviewRow.__table__)
_MAX_SEQ = 2**63 - 1  # the seq column: a signed 64-bit integer


@dataclass(frozen=True)
class Review:
    review_id: str
    tenant: str
    use_case: str
    requester_key_id: str
    state: str
    answer_text: str
    citations: tuple[Mapping[str, Any], ...]
    model: str
    metadata: Mapping[str, Any]
    created_at: dt.datetime
    reviewer_key_id: str | None
    decided_at: dt.datetime | None
    amended_text: str | None
    comment: str
    claimed_by: str | None = None
    claimed_until: dt.datetime | None = None
    #: Insertion order (the keyset of the pending list).
    seq: int = 0

    def claim_holder(self, now: dt.datetime) -> str | None:
        """The key holding a live claim at ``now`` (None: unclaimed or expired)."""
        if self.claimed_by and self.claimed_until is not None and self.claimed_until > now:
            return self.claimed_by
        return None

    def question(self, now: dt.datetime) -> str:
        """The requester's question, kept with the draft only where the use case's retention
        keeps questions, and only until that retention ends ("" otherwise)."""
        question = self.metadata.get("question")
        expires = self.metadata.get("question_expires_at")
        if not isinstance(question, str) or not isinstance(expires, str):
            return ""
        try:
            if dt.datetime.fromisoformat(expires) <= now:
                return ""
        except ValueError:
            return ""
        return question


def review_metadata(question: str, grant: Any) -> dict[str, Any]:
    """Draft metadata for a held answer: the question and when it must be forgotten, where the
    use case keeps questions (``grant.keep_question``); nothing otherwise."""
    decision = getattr(grant, "decision", None)
    if not question or decision is None or not getattr(grant, "keep_question", False):
        return {}
    duration = decision.retention.duration
    if duration is None:
        return {}
    expires = dt.datetime.now(dt.UTC) + duration
    return {"question": question, "question_expires_at": expires.isoformat()}


MAX_CLAIM = dt.timedelta(days=1)
DEFAULT_CLAIM = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class ReleasedAnswer:
    review_id: str
    state: str  # APPROVED | AMENDED
    text: str  # the amended text when AMENDED
    citations: tuple[Mapping[str, Any], ...]
    reviewer_key_id: str
    decided_at: dt.datetime


def _to_review(row: Any) -> Review:
    return Review(
        review_id=row.review_id,
        tenant=row.tenant,
        use_case=row.use_case,
        requester_key_id=row.requester_key_id,
        state=row.state,
        answer_text=row.answer_text,
        citations=tuple(dict(c) for c in (row.citations or ())),
        model=row.model or "",
        metadata=dict(row.metadata_ or {}),
        created_at=utc(row.created_at),
        reviewer_key_id=row.reviewer_key_id,
        decided_at=utc(row.decided_at) if row.decided_at else None,
        amended_text=row.amended_text,
        comment=row.comment or "",
        claimed_by=row.claimed_by,
        claimed_until=utc(row.claimed_until) if row.claimed_until else None,
        seq=int(row.seq),
    )


def _json_list(citations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    try:
        text = json.dumps([dict(c) for c in citations], default=str, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"citations must be JSON objects: {exc}") from exc
    result: list[dict[str, Any]] = json.loads(text)
    return result


class ReviewStore:
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

    def create_draft(
        self,
        *,
        tenant: str,
        use_case: str,
        requester_key_id: str,
        answer_text: str,
        citations: Sequence[Mapping[str, Any]] = (),
        model: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> Review:
        """Hold an answer for review; returns the PENDING_REVIEW draft (with its review_id)."""
        review_id = uuid.uuid4().hex
        values = {
            "review_id": review_id,
            "tenant": tenant,
            "use_case": use_case,
            "requester_key_id": requester_key_id,
            "state": PENDING_REVIEW,
            "answer_text": answer_text,
            "citations": _json_list(citations),
            "model": model,
            "metadata": json.loads(json.dumps(dict(metadata or {}), default=str)),
            "created_at": utc(self._clock()),
            "comment": "",
        }
        with self._engine.begin() as conn:
            conn.execute(_REVIEWS.insert().values(**values))
        return self.get(tenant, review_id)

    def _select(self) -> Any:
        return select(*_REVIEWS.c, _REVIEWS.c["metadata"].label("metadata_"))

    def get(self, tenant: str, review_id: str) -> Review:
        with self._engine.connect() as conn:
            row = conn.execute(
                self._select()
                .where(_REVIEWS.c.review_id == review_id)
                .where(_REVIEWS.c.tenant == tenant)
            ).one_or_none()
        if row is None:
            raise NotFound(
                f"review {shorten(review_id)} not found",
                reason="REVIEW_NOT_FOUND",
                metadata={"review_id": review_id},
            )
        return _to_review(row)

    def list_pending(
        self,
        tenant: str,
        *,
        use_case: str | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> list[Review]:
        """Pending drafts of a tenant, oldest first; ``after``: the ``seq`` of the previous
        page's last draft (keyset: stable while drafts are being added)."""
        query = (
            self._select()
            .where(_REVIEWS.c.tenant == tenant)
            .where(_REVIEWS.c.state == PENDING_REVIEW)
        )
        if after is not None:
            # Clamped to the column's range (a sequence is a signed 64-bit integer): the same
            # rows, and no OverflowError from the driver for a key beyond it.
            query = query.where(_REVIEWS.c.seq > max(min(after, _MAX_SEQ), -_MAX_SEQ - 1))
        if use_case:
            query = query.where(_REVIEWS.c.use_case == use_case)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(_REVIEWS.c.seq).limit(limit)).all()
        return [_to_review(r) for r in rows]

    def decide(
        self,
        tenant: str,
        review_id: str,
        *,
        reviewer_key_id: str,
        decision: str,
        amended_text: str | None = None,
        comment: str = "",
    ) -> Review:
        """APPROVED | AMENDED (``amended_text`` required) | REJECTED, from PENDING_REVIEW only.

        The caller has checked that ``reviewer_key_id`` has the reviewer role.
        """
        if decision not in DECISIONS:
            raise InvalidArgument(
                f"decision must be one of {', '.join(DECISIONS)}, got {shorten(decision)}",
                reason="INVALID_DECISION",
            )
        if decision == AMENDED and not (amended_text or "").strip():
            raise InvalidArgument(
                "an AMENDED decision needs the amended text", reason="AMENDED_TEXT_REQUIRED"
            )
        if decision != AMENDED and amended_text:
            raise InvalidArgument(
                f"amended_text is only for AMENDED decisions, not {decision}",
                reason="AMENDED_TEXT_UNEXPECTED",
            )
        current = self.get(tenant, review_id)
        self._check_four_eyes(current, reviewer_key_id)
        now = utc(self._clock())
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_REVIEWS)
                .where(_REVIEWS.c.review_id == review_id)
                .where(_REVIEWS.c.tenant == tenant)
                .where(_REVIEWS.c.state == PENDING_REVIEW)
                .where(self._free_for(reviewer_key_id, now))
                .values(
                    state=decision,
                    reviewer_key_id=reviewer_key_id,
                    decided_at=utc(self._clock()),
                    amended_text=amended_text if decision == AMENDED else None,
                    comment=comment,
                    claimed_by=None,
                    claimed_until=None,
                )
            )
            won = result.rowcount == 1
        decided = self.get(tenant, review_id)
        if not won:
            self._raise_if_claimed(decided, reviewer_key_id, now)
            raise FailedPrecondition(
                f"review {shorten(review_id)} was already decided: {decided.state}",
                reason="REVIEW_ALREADY_DECIDED",
                metadata={"review_id": review_id, "state": decided.state},
            )
        return decided

    @staticmethod
    def _check_four_eyes(review: Review, reviewer_key_id: str) -> None:
        if review.requester_key_id == reviewer_key_id:
            raise PermissionDenied(
                "a key cannot review an answer it requested (four-eyes rule)",
                reason="SELF_REVIEW_FORBIDDEN",
                metadata={"review_id": review.review_id},
            )

    @staticmethod
    def _free_for(reviewer_key_id: str, now: dt.datetime) -> Any:
        """SQL condition: no live claim by another key."""
        return or_(
            _REVIEWS.c.claimed_by.is_(None),
            _REVIEWS.c.claimed_by == reviewer_key_id,
            _REVIEWS.c.claimed_until.is_(None),
            _REVIEWS.c.claimed_until <= now,
        )

    @staticmethod
    def _raise_if_claimed(review: Review, reviewer_key_id: str, now: dt.datetime) -> None:
        holder = review.claim_holder(now)
        if review.state == PENDING_REVIEW and holder and holder != reviewer_key_id:
            assert review.claimed_until is not None
            raise FailedPrecondition(
                f"review {review.review_id!r} is claimed by {holder} until "
                f"{review.claimed_until.isoformat()}",
                reason="REVIEW_CLAIMED",
                metadata={"review_id": review.review_id, "claimed_by": holder},
            )

    def claim(
        self,
        tenant: str,
        review_id: str,
        *,
        reviewer_key_id: str,
        ttl: dt.timedelta = DEFAULT_CLAIM,
    ) -> Review:
        """Claim a pending draft for ``ttl`` (renewed when the same key claims again).

        FailedPrecondition REVIEW_CLAIMED when another key holds a live claim,
        REVIEW_ALREADY_DECIDED when it is no longer pending.
        """
        if ttl <= dt.timedelta(0) or ttl > MAX_CLAIM:
            raise InvalidArgument(
                f"a claim lasts between 1 second and {int(MAX_CLAIM.total_seconds())} seconds",
                reason="INVALID_CLAIM_TTL",
            )
        current = self.get(tenant, review_id)
        self._check_four_eyes(current, reviewer_key_id)
        now = utc(self._clock())
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_REVIEWS)
                .where(_REVIEWS.c.review_id == review_id)
                .where(_REVIEWS.c.tenant == tenant)
                .where(_REVIEWS.c.state == PENDING_REVIEW)
                .where(self._free_for(reviewer_key_id, now))
                .values(claimed_by=reviewer_key_id, claimed_until=now + ttl)
            )
            won = result.rowcount == 1
        claimed = self.get(tenant, review_id)
        if not won:
            self._raise_if_claimed(claimed, reviewer_key_id, now)
            raise FailedPrecondition(
                f"review {shorten(review_id)} was already decided: {claimed.state}",
                reason="REVIEW_ALREADY_DECIDED",
                metadata={"review_id": review_id, "state": claimed.state},
            )
        return claimed

    def released_answer(self, tenant: str, review_id: str) -> ReleasedAnswer:
        """The answer as released to the requester; FailedPrecondition REVIEW_PENDING or
        REVIEW_REJECTED otherwise."""
        review = self.get(tenant, review_id)
        if review.state == PENDING_REVIEW:
            raise FailedPrecondition(
                f"review {shorten(review_id)} is still pending",
                reason="REVIEW_PENDING",
                metadata={"review_id": review_id},
            )
        if review.state == REJECTED:
            raise FailedPrecondition(
                f"the answer of review {shorten(review_id)} was rejected by the reviewer",
                reason="REVIEW_REJECTED",
                metadata={"review_id": review_id},
            )
        assert review.reviewer_key_id is not None and review.decided_at is not None
        text = review.amended_text if review.state == AMENDED else review.answer_text
        return ReleasedAnswer(
            review_id=review.review_id,
            state=review.state,
            text=text or "",
            citations=review.citations,
            reviewer_key_id=review.reviewer_key_id,
            decided_at=review.decided_at,
        )
