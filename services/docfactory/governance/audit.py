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

Chains (no global lock): records form one hash chain per tenant -- or per tenant x shard with
``DOCFACTORY_AUDIT_SHARDS`` = N > 1, the shard drawn at random per record -- so requests of
different tenants never wait on one row. Each chain has a head row in ``audit_chains`` (its
last record's seq and hash), locked while a record is appended to it (PostgreSQL
``SELECT ... FOR UPDATE`` on that row only; SQLite serialises writers with ``BEGIN
IMMEDIATE``). ``seq`` stays one global order (PostgreSQL: the ``audit_records_seq`` sequence,
no lock; it may skip values after a failed append, so gaps in ``seq`` alone prove nothing).
A record of a chain also chains ``chain`` and ``prev_seq`` (the seq of its predecessor in the
chain), so a deleted record is named by its successor, and a deleted tail by the chain head.
Records written before chains existed keep their original format in the legacy chain ``""``.

Anchors: every ``anchor_every`` records (global seq), an ``audit_anchors`` row records the
heads of all chains, hash-chained to the previous anchor. ``verify()`` checks every chain,
every chain head, the anchors' own chain, and that each anchored head still exists with its
hash (``ANCHOR_MISMATCH``): dropping or rewriting a whole chain's tail back past an anchor is
caught even when the attacker also rewrote that chain's head. ``anchor()`` writes one now
(e.g. before copying the newest anchor hash to a WORM store).

What ``verify()`` reports (``Problem(seq, kind)``):

- ``ALTERED``: the record's fields no longer hash to its stored hash (or its question text no
  longer matches its salted hash);
- ``MISSING``: a record named by its successor (``prev_seq``) or by its chain's head that is
  not in the table (deleted records, including at the end of a chain);
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
import random
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
    func,
    select,
    update,
)
from sqlalchemy import Sequence as SqlSequence
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from docfactory.core.db import Base
from docfactory.core.errors import InvalidArgument
from docfactory.core.migrate import ensure_schema
from docfactory.core.timeutil import utc, utcnow
from docfactory.governance._sql import upsert, write_transaction

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
ANCHOR_MISMATCH = "ANCHOR_MISMATCH"

#: The chain of records written before chains existed (original record format).
LEGACY_CHAIN = ""
#: Global order of records on PostgreSQL (SQLite: max + 1 under its write lock).
SEQ: SqlSequence = SqlSequence("audit_records_seq", metadata=Base.metadata)

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
    # The chain of this record (tenant, or tenant#shard; LEGACY_CHAIN before chains) and the
    # seq of its predecessor in that chain (None: first of its chain, or legacy).
    chain: Mapped[str] = mapped_column(String(160))
    prev_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_audit_records_tenant_time", "tenant", "time"),
        Index("ix_audit_records_time", "time"),
        Index("ix_audit_records_question_expiry", "question_expires_at"),
        Index("ix_audit_records_chain_seq", "chain", "seq"),
    )


class AuditChainRow(Base):
    """The head of one chain: the last record's seq and hash (locked while appending)."""

    __tablename__ = "audit_chains"

    chain: Mapped[str] = mapped_column(String(160), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditAnchorRow(Base):
    """The heads of every chain at one moment, hash-chained to the previous anchor."""

    __tablename__ = "audit_anchors"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    heads: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


_RECORDS = cast(Table, AuditRow.__table__)
_CHAINS = cast(Table, AuditChainRow.__table__)
_ANCHORS = cast(Table, AuditAnchorRow.__table__)
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
    chain: str = LEGACY_CHAIN
    prev_seq: int | None = None

    def chained(self) -> dict[str, Any]:
        out = self._fields()
        if self.chain != LEGACY_CHAIN:
            out["chain"] = self.chain
            out["prev_seq"] = self.prev_seq
        return out

    def _fields(self) -> dict[str, Any]:
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
    chain: str = ""


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
    """sha256 of the canonical JSON of the chained fields (``prev_hash`` included; ``chain``
    and ``prev_seq`` too for a record of a chain, i.e. when ``chain`` is set and not legacy)."""
    names: tuple[str, ...] = _CHAINED
    if fields.get("chain"):
        names = (*_CHAINED, "chain", "prev_seq")
    data = {k: fields[k] for k in names}
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
        chain=row.chain or LEGACY_CHAIN,
        prev_seq=int(row.prev_seq) if row.prev_seq is not None else None,
    )


def anchor_hash(anchor_id: int, time: dt.datetime, heads: Mapping[str, Any], prev: str) -> str:
    data = {"id": anchor_id, "time": _iso(time), "heads": dict(heads), "prev_hash": prev}
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


class AuditLog:
    """The audit log of one database. Thread- and process-safe appends."""

    def __init__(
        self,
        engine: Engine,
        *,
        create_tables: bool = True,
        clock: Callable[[], dt.datetime] = utcnow,
        shards: int | None = None,
        anchor_every: int | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._shards = max(1, shards or int(os.environ.get("DOCFACTORY_AUDIT_SHARDS", "1")))
        self._anchor_every = max(
            1, anchor_every or int(os.environ.get("DOCFACTORY_AUDIT_ANCHOR_EVERY", "1000"))
        )
        if create_tables:
            ensure_schema(engine)

    def chain_of(self, tenant: str) -> str:
        """The chain a new record of ``tenant`` goes to."""
        if self._shards == 1:
            return tenant
        return f"{tenant}#{random.randrange(self._shards)}"

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

        chain = self.chain_of(tenant)
        with write_transaction(self._engine) as conn:
            head_seq, head_hash = self._lock_chain(conn, chain)
            if conn.dialect.name == "postgresql":
                seq = int(conn.execute(SEQ.next_value()).scalar_one())
            else:  # SQLite: writers are serialised by BEGIN IMMEDIATE
                seq = (
                    int(
                        conn.execute(
                            select(func.coalesce(func.max(_RECORDS.c.seq), 0))
                        ).scalar_one()
                    )
                    + 1
                )
            now = utc(self._clock())
            record = AuditRecord(
                seq=seq,
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
                chain=chain,
                prev_seq=head_seq or None,
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
                    chain=chain,
                    prev_seq=record.prev_seq,
                )
            )
            conn.execute(
                update(_CHAINS).where(_CHAINS.c.chain == chain).values(seq=record.seq, hash=digest)
            )
        if record.seq % self._anchor_every == 0:
            self.anchor()
        return AuditRecord(**{**record.__dict__, "hash": digest})

    def _lock_chain(self, conn: Any, chain: str) -> tuple[int, str]:
        """Lock the chain's head row (created on first use); its (seq, hash)."""
        query = select(_CHAINS.c.seq, _CHAINS.c.hash).where(_CHAINS.c.chain == chain)
        head = conn.execute(query.with_for_update()).one_or_none()
        if head is None:
            conn.execute(
                upsert(conn, _CHAINS)
                .values(chain=chain, seq=0, hash=GENESIS_HASH)
                .on_conflict_do_nothing(index_elements=["chain"])
            )
            head = conn.execute(query.with_for_update()).one()
        return int(head.seq), str(head.hash)

    def anchor(self) -> int:
        """Record the heads of every chain (hash-chained to the previous anchor); its id."""
        with write_transaction(self._engine) as conn:
            last = conn.execute(
                select(_ANCHORS.c.id, _ANCHORS.c.hash)
                .order_by(_ANCHORS.c.id.desc())
                .limit(1)
                .with_for_update()
            ).one_or_none()
            anchor_id = int(last.id) + 1 if last else 1
            prev = str(last.hash) if last else GENESIS_HASH
            heads = {
                str(r.chain): [int(r.seq), str(r.hash)]
                for r in conn.execute(select(_CHAINS)).all()
                if int(r.seq) > 0
            }
            now = utc(self._clock())
            conn.execute(
                _ANCHORS.insert().values(
                    id=anchor_id,
                    time=now,
                    heads=heads,
                    prev_hash=prev,
                    hash=anchor_hash(anchor_id, now, heads, prev),
                )
            )
        return anchor_id

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
        """The newest record's (seq, hash) over all chains."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(_CHAINS.c.seq, _CHAINS.c.hash).order_by(_CHAINS.c.seq.desc()).limit(1)
            ).one_or_none()
            return (int(row.seq), str(row.hash)) if row else (0, GENESIS_HASH)

    def chains(self) -> dict[str, tuple[int, str]]:
        """Every chain's head (seq, hash)."""
        with self._engine.connect() as conn:
            return {
                str(r.chain): (int(r.seq), str(r.hash)) for r in conn.execute(select(_CHAINS)).all()
            }

    def find(
        self,
        action: str,
        tenant: str,
        *,
        seq: int | None = None,
        key_id: str | None = None,
        outcomes: Sequence[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        newest: bool = False,
    ) -> AuditRecord | None:
        """The first record (by seq; the last with ``newest``) of ``action`` in ``tenant`` that
        matches every filter given (``since``/``until`` inclusive), or None."""
        query = select(_RECORDS).where(_RECORDS.c.action == action, _RECORDS.c.tenant == tenant)
        if seq is not None:
            query = query.where(_RECORDS.c.seq == seq)
        if key_id is not None:
            query = query.where(_RECORDS.c.key_id == key_id)
        if outcomes is not None:
            query = query.where(_RECORDS.c.outcome.in_(list(outcomes)))
        if since is not None:
            query = query.where(_RECORDS.c.time >= utc(since))
        if until is not None:
            query = query.where(_RECORDS.c.time <= utc(until))
        query = query.order_by(_RECORDS.c.seq.desc() if newest else _RECORDS.c.seq).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _to_record(row) if row is not None else None

    def records(
        self,
        *,
        since: dt.datetime | None = None,
        tenant: str | None = None,
        chain: str | None = None,
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
            if chain is not None:
                query = query.where(_RECORDS.c.chain == chain)
            query = query.order_by(_RECORDS.c.seq).limit(batch_size)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield _to_record(row)
            if len(rows) < batch_size:
                return
            last = int(rows[-1].seq)

    def verify(self, *, max_problems: int = 1000) -> VerifyReport:
        """Recompute every hash and link of every chain, check every chain head and every
        anchor; see the module docstring for the problem kinds."""
        report = VerifyReport(ok=True, checked=0)
        mismatched: dict[int, AuditRecord] = {}
        question_bad: list[int] = []
        links: list[tuple[int, int]] = []  # (seq, previous seq) whose link is broken
        missing: list[tuple[int, str]] = []
        last: dict[str, AuditRecord] = {}  # chain -> last record seen (records in seq order)
        seen: dict[int, str] = {}  # seq -> hash of every record
        for rec in self.records():
            report.checked += 1
            seen[rec.seq] = rec.hash
            if record_hash(rec.chained()) != rec.hash:
                mismatched[rec.seq] = rec
            elif rec.question is not None and (
                not rec.question_salt
                or not rec.question_hash
                or question_digest(rec.question_salt, rec.question) != rec.question_hash
            ):
                question_bad.append(rec.seq)
            prev = last.get(rec.chain)
            if rec.prev_hash != (prev.hash if prev is not None else GENESIS_HASH):
                links.append((rec.seq, prev.seq if prev is not None else 0))
            last[rec.chain] = rec
        # A broken link whose predecessor is absent is a deletion: MISSING, named by prev_seq
        # (legacy records: every seq up to the next present one).
        kept: list[tuple[int, int]] = []
        for seq, before in links:
            rec_prev = self._prev_seq_of(seq, mismatched)
            if rec_prev is not None and rec_prev not in seen:
                missing.append((rec_prev, ""))
            elif rec_prev is None and self._legacy_gap(seq, before, seen):
                missing.extend((s, LEGACY_CHAIN) for s in range(before + 1, seq))
            else:
                kept.append((seq, before))
        links = kept

        heads = self.chains()
        report.head_seq = max((h[0] for h in heads.values()), default=0)
        for chain in sorted(set(heads) | set(last)):
            head_seq, head_hash = heads.get(chain, (0, GENESIS_HASH))
            tail = last.get(chain)
            last_seq = tail.seq if tail is not None else 0
            if head_seq and head_seq not in seen:
                missing.append((head_seq, chain))
                report.notes.append(
                    f"chain {chain!r}: head is at seq {head_seq}, last record is {last_seq}"
                )
            elif tail is not None and (head_seq != last_seq or head_hash != tail.hash):
                report.notes.append(
                    f"chain {chain!r}: head (seq {head_seq}) does not match the last record "
                    f"(seq {last_seq})"
                )
                if last_seq not in mismatched:
                    links.append((last_seq, -1))

        problems: list[Problem] = [Problem(seq, MISSING, chain) for seq, chain in missing]
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
                problems.append(Problem(seq, REORDERED, rec.chain))
                report.notes.append(f"record at seq {seq} was written as seq {original}")
            else:
                problems.append(Problem(seq, ALTERED, rec.chain))
        problems.extend(Problem(s, ALTERED) for s in question_bad)
        for seq, before in links:
            if seq in reordered or before in mismatched:
                continue  # explained by the problem already reported there
            problems.append(Problem(seq, BROKEN_LINK))
        problems.extend(self._verify_anchors(seen, report))
        problems = sorted(set(problems))
        if len(problems) > max_problems:
            problems = problems[:max_problems]
            report.truncated = True
        report.problems = problems
        report.ok = not problems
        return report

    def _prev_seq_of(self, seq: int, mismatched: Mapping[int, AuditRecord]) -> int | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(_RECORDS.c.prev_seq, _RECORDS.c.chain).where(_RECORDS.c.seq == seq)
            ).one_or_none()
        if row is None or row.prev_seq is None or seq in mismatched:
            return None
        return int(row.prev_seq)

    @staticmethod
    def _legacy_gap(seq: int, before: int, seen: Mapping[int, str]) -> bool:
        """Legacy records (no prev_seq) are numbered 1, 2, 3...: a gap in seq is a deletion."""
        return (
            before >= 0 and seq > before + 1 and all(s not in seen for s in range(before + 1, seq))
        )

    def _verify_anchors(self, seen: Mapping[int, str], report: VerifyReport) -> list[Problem]:
        problems: list[Problem] = []
        prev = GENESIS_HASH
        with self._engine.connect() as conn:
            rows = conn.execute(select(_ANCHORS).order_by(_ANCHORS.c.id)).all()
        for expected_id, row in enumerate(rows, start=1):
            heads = dict(row.heads or {})
            if int(row.id) != expected_id or row.prev_hash != prev:
                problems.append(Problem(int(row.id), BROKEN_LINK, "anchor"))
            if anchor_hash(int(row.id), utc(row.time), heads, row.prev_hash) != row.hash:
                problems.append(Problem(int(row.id), ALTERED, "anchor"))
            for chain, (seq, digest) in heads.items():
                if seen.get(int(seq)) != digest:
                    problems.append(Problem(int(seq), ANCHOR_MISMATCH, str(chain)))
                    report.notes.append(
                        f"anchor {row.id}: chain {chain!r} record {seq} is "
                        + ("gone" if int(seq) not in seen else "not the anchored one")
                    )
            prev = row.hash
        report.notes.append(f"{len(rows)} anchor(s) checked")
        return problems

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
    """Check the hashes and links (of each chain) of an exported, unfiltered JSONL (offline
    verification)."""
    problems: list[Problem] = []
    prev_hash: dict[str, str] = {}
    for line in lines:
        data = json.loads(line)
        chain = str(data.get("chain") or LEGACY_CHAIN)
        if record_hash(data) != data["hash"]:
            problems.append(Problem(int(data["seq"]), ALTERED, chain))
        elif data["prev_hash"] != prev_hash.get(chain, GENESIS_HASH):
            problems.append(Problem(int(data["seq"]), BROKEN_LINK, chain))
        prev_hash[chain] = data["hash"]
    return problems
