"""Append-only, hash-chained audit log in SQL (SQLite or PostgreSQL).

Design
------
Each record ``n`` stores ``prev_hash`` (the hash of record ``n-1``; 64 zeros for record 1) and
``hash = sha256(canonical_json(chained fields))`` where the chained fields are: ``seq, time,
tenant, key_id, use_case, action, document_ids, model, outcome, latency_ms, question_hash,
question_salt, details, prev_hash``. Canonical JSON: keys sorted, no whitespace, UTF-8, time as
ISO 8601 UTC with microseconds.

Question text and retention: the question is *not* a chained field. When the use case's
retention keeps questions, the record stores ``question`` (plain text),
``question_expires_at``, a random ``question_salt`` and ``question_hash = sha256(salt ||
question)``; only the salt and the hash are chained. ``purge_questions()`` nulls the text (and
its expiry) once expired, which leaves every chained field -- and so the chain -- intact, while
``verify()`` still detects a question text edited in place (its salted hash no longer
matches). With retention ``none`` neither the text nor its hash is stored (a hash of a short
question could be confirmed by guessing). The salt makes precomputed dictionaries useless but
not a targeted guess at one record: purge is a retention measure, not encryption.

Serialization: a one-row table ``audit_chain_head`` (seq, hash of the last record) is the
lock. PostgreSQL: ``SELECT ... FOR UPDATE`` on it inside the append transaction; SQLite:
``BEGIN IMMEDIATE``. Concurrent writers of any number of processes / replicas therefore see
and extend the true head; ``seq`` is the primary key, so a second writer can never fork the
chain. The head also lets ``verify()`` notice deleted trailing records.

What ``verify()`` reports (``Problem(seq, kind)``):

- ``ALTERED``: the record's fields no longer hash to its stored hash (or its question text no
  longer matches its salted hash);
- ``MISSING``: a seq absent from 1..head (deleted records, including at the end);
- ``REORDERED``: the record hashes correctly under another record's seq (seq values swapped);
- ``BROKEN_LINK``: a self-consistent record whose ``prev_hash`` is not the hash of the record
  before it (a predecessor rewritten with a recomputed hash, a forged insertion), or a head
  that does not match the last record. Links next to records already reported are not
  reported again.

Tamper *evidence*, not prevention: an attacker able to rewrite the whole table and the head
could recompute everything. Export the log regularly (``export_jsonl``) or anchor the head
hash elsewhere (write it to a WORM bucket, sign it) to close that gap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from docfactory.core.db import Base
from docfactory.core.errors import InvalidArgument
from docfactory.core.migrate import ensure_schema
from docfactory.governance._sql import upsert, utc, utcnow, write_transaction

GENESIS_HASH = "0" * 64

# Actions (free UPPER_SNAKE strings are accepted too).
SEARCH = "SEARCH"
ANSWER = "ANSWER"
REVIEW_DECISION = "REVIEW_DECISION"
REVIEW_RELEASE = "REVIEW_RELEASE"
INGEST = "INGEST"
DELETE = "DELETE"
FEEDBACK = "FEEDBACK"
POLICY_RELOAD = "POLICY_RELOAD"

ALTERED = "ALTERED"
MISSING = "MISSING"
REORDERED = "REORDERED"
BROKEN_LINK = "BROKEN_LINK"

_ACTION_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class AuditRow(Base):
    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    tenant: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(128))
    use_case: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    document_ids: Mapped[list[str]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(64))
    latency_ms: Mapped[int] = mapped_column(Integer)
    question_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    question_salt: Mapped[str | None] = mapped_column(String(32), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # outside the chain (see module docstring): purged when expired
    question: Mapped[str | None] = mapped_column(Text, nullable=True)
    question_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )

    __table_args__ = (
        Index("ix_audit_records_tenant_time", "tenant", "time"),
        Index("ix_audit_records_time", "time"),
        Index("ix_audit_records_question_expiry", "question_expires_at"),
    )


class AuditHeadRow(Base):
    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


_RECORDS = cast(Table, AuditRow.__table__)
_HEAD = cast(Table, AuditHeadRow.__table__)
_CHAINED = (
    "seq",
    "time",
    "tenant",
    "key_id",
    "use_case",
    "action",
    "document_ids",
    "model",
    "outcome",
    "latency_ms",
    "question_hash",
    "question_salt",
    "details",
    "prev_hash",
)


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: dt.datetime
    tenant: str
    key_id: str
    use_case: str
    action: str
    document_ids: tuple[str, ...]
    model: str
    outcome: str
    latency_ms: int
    question_hash: str | None
    question_salt: str | None
    details: Mapping[str, Any]
    prev_hash: str
    hash: str
    question: str | None = None
    question_expires_at: dt.datetime | None = None

    def chained(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": _iso(self.time),
            "tenant": self.tenant,
            "key_id": self.key_id,
            "use_case": self.use_case,
            "action": self.action,
            "document_ids": list(self.document_ids),
            "model": self.model,
            "outcome": self.outcome,
            "latency_ms": self.latency_ms,
            "question_hash": self.question_hash,
            "question_salt": self.question_salt,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.chained()
        out["hash"] = self.hash
        out["question"] = self.question
        out["question_expires_at"] = (
            _iso(self.question_expires_at) if self.question_expires_at else None
        )
        return out


class Problem(NamedTuple):
    seq: int
    kind: str


@dataclass
class VerifyReport:
    ok: bool
    checked: int
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head_seq: int = 0
    truncated: bool = False


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the chained fields (``prev_hash`` included)."""
    data = {k: fields[k] for k in _CHAINED}
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def question_digest(salt: str, question: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + question.encode("utf-8")).hexdigest()


def _iso(value: dt.datetime) -> str:
    return utc(value).isoformat(timespec="microseconds")


def _normalize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if not details:
        return {}
    try:
        text = json.dumps(dict(details), default=str, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        raise InvalidArgument(f"audit details are not valid JSON: {exc}") from exc
    result: dict[str, Any] = json.loads(text)
    return result


def _to_record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq),
        time=utc(row.time),
        tenant=row.tenant,
        key_id=row.key_id,
        use_case=row.use_case,
        action=row.action,
        document_ids=tuple(row.document_ids or ()),
        model=row.model,
        outcome=row.outcome,
        latency_ms=int(row.latency_ms),
        question_hash=row.question_hash,
        question_salt=row.question_salt,
        details=dict(row.details or {}),
        prev_hash=row.prev_hash,
        hash=row.hash,
        question=row.question,
        question_expires_at=utc(row.question_expires_at) if row.question_expires_at else None,
    )


class AuditLog:
    """The audit log of one database. Thread- and process-safe appends."""

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
            with write_transaction(engine) as conn:
                conn.execute(
                    upsert(conn, _HEAD)
                    .values(id=1, seq=0, hash=GENESIS_HASH)
                    .on_conflict_do_nothing(index_elements=["id"])
                )

    # -- writing -------------------------------------------------------------------------

    def append(
        self,
        *,
        tenant: str,
        key_id: str,
        use_case: str,
        action: str,
        outcome: str = "OK",
        document_ids: Sequence[str] = (),
        model: str = "",
        latency_ms: int = 0,
        question: str | None = None,
        question_retention: dt.timedelta | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record; returns it with its seq and hash.

        ``question`` is stored only when ``question_retention`` is a positive duration (from
        ``Decision.retention.duration``); it is then purged by ``purge_questions`` after that
        duration. Otherwise it is dropped here.
        """
        if not _ACTION_RE.match(action):
            raise InvalidArgument(f"invalid audit action {action!r} (UPPER_SNAKE expected)")
        if isinstance(document_ids, str):
            raise InvalidArgument("document_ids must be a sequence of ids, not a string")
        docs = [str(d) for d in document_ids]
        payload = _normalize_details(details)
        keep = (
            question is not None
            and question_retention is not None
            and question_retention > dt.timedelta(0)
        )
        salt = secrets.token_hex(16) if keep else None
        q_hash = question_digest(salt, question) if salt and question is not None else None

        with write_transaction(self._engine) as conn:
            head = conn.execute(
                select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
            ).one_or_none()
            if head is None:  # create_tables=False on a fresh schema
                conn.execute(_HEAD.insert().values(id=1, seq=0, hash=GENESIS_HASH))
                head_seq, head_hash = 0, GENESIS_HASH
            else:
                head_seq, head_hash = int(head.seq), str(head.hash)
            now = utc(self._clock())
            record = AuditRecord(
                seq=head_seq + 1,
                time=now,
                tenant=tenant,
                key_id=key_id,
                use_case=use_case,
                action=action,
                document_ids=tuple(docs),
                model=model,
                outcome=outcome,
                latency_ms=int(latency_ms),
                question_hash=q_hash,
                question_salt=salt,
                details=payload,
                prev_hash=head_hash,
                hash="",
                question=question if keep else None,
                question_expires_at=(
                    now + question_retention if keep and question_retention else None
                ),
            )
            digest = record_hash(record.chained())
            conn.execute(
                _RECORDS.insert().values(
                    seq=record.seq,
                    time=now,
                    tenant=tenant,
                    key_id=key_id,
                    use_case=use_case,
                    action=action,
                    document_ids=docs,
                    model=model,
                    outcome=outcome,
                    latency_ms=record.latency_ms,
                    question_hash=q_hash,
                    question_salt=salt,
                    details=payload,
                    prev_hash=head_hash,
                    hash=digest,
                    question=record.question,
                    question_expires_at=record.question_expires_at,
                )
            )
            conn.execute(update(_HEAD).where(_HEAD.c.id == 1).values(seq=record.seq, hash=digest))
        return AuditRecord(**{**record.__dict__, "hash": digest})

    def purge_questions(self, now: dt.datetime | None = None) -> int:
        """Null the question text of records past their retention; returns how many."""
        moment = utc(now or self._clock())
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                update(_RECORDS)
                .where(_RECORDS.c.question_expires_at.is_not(None))
                .where(_RECORDS.c.question_expires_at <= moment)
                .values(question=None, question_expires_at=None)
            )
            return int(result.rowcount or 0)

    # -- reading -------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        with self._engine.connect() as conn:
            row = conn.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).one()
            return int(row.seq), str(row.hash)

    def records(
        self,
        *,
        since: dt.datetime | None = None,
        tenant: str | None = None,
        batch_size: int = 1000,
    ) -> Iterator[AuditRecord]:
        """Records in seq order (keyset pagination: constant memory)."""
        last = 0
        while True:
            query = select(_RECORDS).where(_RECORDS.c.seq > last)
            if since is not None:
                query = query.where(_RECORDS.c.time >= utc(since))
            if tenant is not None:
                query = query.where(_RECORDS.c.tenant == tenant)
            query = query.order_by(_RECORDS.c.seq).limit(batch_size)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield _to_record(row)
            if len(rows) < batch_size:
                return
            last = int(rows[-1].seq)

    def verify(self, *, max_problems: int = 1000) -> VerifyReport:
        """Recompute every hash and link; see the module docstring for the problem kinds."""
        report = VerifyReport(ok=True, checked=0)
        mismatched: dict[int, AuditRecord] = {}
        question_bad: list[int] = []
        links: list[tuple[int, int]] = []  # (seq, previous seq) whose link is broken
        missing: list[int] = []
        prev: AuditRecord | None = None
        expected = 1
        for rec in self.records():
            report.checked += 1
            gap = rec.seq > expected
            if gap:
                missing.extend(range(expected, min(rec.seq, expected + max_problems)))
            if record_hash(rec.chained()) != rec.hash:
                mismatched[rec.seq] = rec
            elif rec.question is not None and (
                not rec.question_salt
                or not rec.question_hash
                or question_digest(rec.question_salt, rec.question) != rec.question_hash
            ):
                question_bad.append(rec.seq)
            expected_prev = prev.hash if prev is not None else GENESIS_HASH
            if not gap and rec.prev_hash != expected_prev:
                links.append((rec.seq, prev.seq if prev is not None else 0))
            prev = rec
            expected = rec.seq + 1

        with self._engine.connect() as conn:
            head = conn.execute(
                select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
            ).one_or_none()
        head_seq, head_hash = (int(head.seq), str(head.hash)) if head else (0, GENESIS_HASH)
        report.head_seq = head_seq
        last_seq = prev.seq if prev is not None else 0
        if head_seq > last_seq:
            missing.extend(range(last_seq + 1, min(head_seq + 1, last_seq + 1 + max_problems)))
            report.notes.append(f"head is at seq {head_seq}, last record is {last_seq}")
        elif prev is not None and (head_seq < last_seq or head_hash != prev.hash):
            report.notes.append(
                f"head (seq {head_seq}) does not match the last record (seq {last_seq})"
            )
            if last_seq not in mismatched:
                links.append((last_seq, -1))

        problems: list[Problem] = [Problem(s, MISSING) for s in missing]
        reordered: set[int] = set()
        for seq, rec in mismatched.items():
            original = next(
                (
                    other
                    for other in mismatched
                    if other != seq and record_hash({**rec.chained(), "seq": other}) == rec.hash
                ),
                None,
            )
            if original is not None:
                reordered.add(seq)
                problems.append(Problem(seq, REORDERED))
                report.notes.append(f"record at seq {seq} was written as seq {original}")
            else:
                problems.append(Problem(seq, ALTERED))
        problems.extend(Problem(s, ALTERED) for s in question_bad)
        for seq, before in links:
            if seq in reordered or before in mismatched:
                continue  # explained by the problem already reported there
            problems.append(Problem(seq, BROKEN_LINK))
        problems.sort()
        if len(problems) > max_problems:
            problems = problems[:max_problems]
            report.truncated = True
        report.problems = problems
        report.ok = not problems
        return report

    def export_jsonl(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        since: dt.datetime | None = None,
        tenant: str | None = None,
    ) -> int:
        """Write records (seq order) as JSON lines, with hash and prev_hash; returns the count.

        A tenant filter gives a subset whose links point at records of other tenants: verify
        a full export (or the database) for chain integrity.
        """
        if isinstance(target, str | os.PathLike):
            with Path(target).open("w", encoding="utf-8") as f:
                return self._export(f, since, tenant)
        return self._export(target, since, tenant)

    def _export(self, f: IO[str], since: dt.datetime | None, tenant: str | None) -> int:
        count = 0
        for rec in self.records(since=since, tenant=tenant):
            f.write(canonical_json(rec.to_json()) + "\n")
            count += 1
        return count


def verify_jsonl_lines(lines: Sequence[str]) -> list[Problem]:
    """Check the hashes and links of an exported, unfiltered JSONL (offline verification)."""
    problems: list[Problem] = []
    prev_hash = None
    for line in lines:
        data = json.loads(line)
        if record_hash(data) != data["hash"]:
            problems.append(Problem(int(data["seq"]), ALTERED))
        elif prev_hash is not None and data["prev_hash"] != prev_hash:
            problems.append(Problem(int(data["seq"]), BROKEN_LINK))
        prev_hash = data["hash"]
    return problems
