"""Hash-chained audit log: verification, tamper detection, concurrency, export, retention."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import text

from docfactory.core.errors import InvalidArgument
from docfactory.governance.audit import (
    ALTERED,
    BROKEN_LINK,
    GENESIS_HASH,
    MISSING,
    REORDERED,
    AuditLog,
    record_hash,
    verify_jsonl_lines,
)
from tests.governance._workers import audit_appender
from tests.governance.conftest import DbTarget


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1, microseconds=123)
        return self.now


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            tenant="nord" if i % 2 else "sud",
            key_id="app-1",
            use_case="credit-faq",
            action="ANSWER" if i % 3 else "SEARCH",
            outcome="OK",
            document_ids=[f"doc-{i}", "doc-x"],
            model="mistral-small",
            latency_ms=10 * i,
            question=f"Question n°{i} — délai ?",
            question_retention=dt.timedelta(days=30),
            details={"top_k": 5, "scores": [0.5, 0.25], "lang": "fr", "i": i},
        )


def kinds(log: AuditLog) -> list[tuple[int, str]]:
    report = log.verify()
    assert report.ok is (not report.problems)
    return [(p.seq, p.kind) for p in report.problems]


def test_append_and_verify(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 12)
    report = log.verify()
    assert report.ok and report.checked == 12 and report.head_seq == 12
    records = list(log.records())
    assert [r.seq for r in records] == list(range(1, 13))
    # one chain per tenant: each record links to the previous record of its tenant
    for tenant in ("nord", "sud"):
        chain = [r for r in records if r.tenant == tenant]
        assert {r.chain for r in chain} == {tenant}
        assert chain[0].prev_hash == GENESIS_HASH and chain[0].prev_seq is None
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
        assert all(b.prev_seq == a.seq for a, b in itertools.pairwise(chain))
    assert records[3].document_ids == ("doc-3", "doc-x")
    assert records[3].details["scores"] == [0.5, 0.25]
    assert records[3].question == "Question n°3 — délai ?"
    assert records[3].time.tzinfo is not None
    assert record_hash(records[5].chained()) == records[5].hash
    assert log.head() == (12, records[-1].hash)


def test_empty_log_verifies(db: DbTarget) -> None:
    report = AuditLog(db.engine).verify()
    assert report.ok and report.checked == 0


def test_question_kept_only_with_retention(db: DbTarget) -> None:
    log = AuditLog(db.engine)
    none = log.append(tenant="t", key_id="k", use_case="u", action="ANSWER", question="secret ?")
    assert none.question is None and none.question_hash is None and none.question_salt is None
    kept = log.append(
        tenant="t",
        key_id="k",
        use_case="u",
        action="ANSWER",
        question="gardée ?",
        question_retention=dt.timedelta(days=1),
    )
    assert kept.question == "gardée ?" and kept.question_hash and kept.question_expires_at
    with pytest.raises(InvalidArgument):
        log.append(tenant="t", key_id="k", use_case="u", action="not an action")
    with pytest.raises(InvalidArgument):
        log.append(
            tenant="t", key_id="k", use_case="u", action="SEARCH", details={"x": float("nan")}
        )
    assert log.verify().ok


def test_retention_purge_keeps_the_chain_valid(db: DbTarget) -> None:
    clock = Clock()
    log = AuditLog(db.engine, clock=clock)
    fill(log, 4)
    log.append(
        tenant="t",
        key_id="k",
        use_case="u",
        action="ANSWER",
        question="un an",
        question_retention=dt.timedelta(days=365),
    )
    assert log.purge_questions(now=clock.now + dt.timedelta(days=29)) == 0
    assert log.purge_questions(now=clock.now + dt.timedelta(days=31)) == 4
    records = list(log.records())
    assert [r.question for r in records] == [None, None, None, None, "un an"]
    assert all(r.question_hash for r in records)
    assert log.verify().ok


def test_tamper_edit_a_field(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 8)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET outcome = 'DENIED' WHERE seq = 3"))
        conn.execute(text("UPDATE audit_records SET latency_ms = 1 WHERE seq = 6"))
    assert kinds(log) == [(3, ALTERED), (6, ALTERED)]


def test_tamper_edit_question_text(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 4)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET question = 'autre' WHERE seq = 2"))
    assert kinds(log) == [(2, ALTERED)]


def test_tamper_edit_with_recomputed_hash_breaks_the_link(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 6)
    rec = next(r for r in log.records() if r.seq == 4)
    forged = {**rec.chained(), "outcome": "DENIED"}
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET outcome = 'DENIED', hash = :h WHERE seq = 4"),
            {"h": record_hash(forged)},
        )
    # seq 4 is nord's (even seqs): the next record of its chain, 6, no longer links to it
    assert kinds(log) == [(6, BROKEN_LINK)]


def test_tamper_delete_rows(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 10)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq IN (4, 10)"))
    assert kinds(log) == [(4, MISSING), (10, MISSING)]


def test_tamper_delete_first_row(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 3)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq = 1"))
    assert kinds(log) == [(1, MISSING)]


@pytest.mark.parametrize(("a", "b"), [(3, 7), (5, 6)])
def test_tamper_swap_two_rows_seq(db: DbTarget, a: int, b: int) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 9)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET seq = -1 WHERE seq = :a"), {"a": a})
        conn.execute(text("UPDATE audit_records SET seq = :a WHERE seq = :b"), {"a": a, "b": b})
        conn.execute(text("UPDATE audit_records SET seq = :b WHERE seq = -1"), {"b": b})
    report = log.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(a, REORDERED), (b, REORDERED)]
    assert f"record at seq {a} was written as seq {b}" in report.notes


def test_tamper_forged_tail_record_without_head(db: DbTarget) -> None:
    log = AuditLog(db.engine, clock=Clock())
    fill(log, 3)
    last = list(log.records())[-1]
    forged = {**last.chained(), "seq": 4, "prev_hash": last.hash, "prev_seq": 3}
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_records (seq, time, tenant, key_id, use_case, action, "
                "document_ids, model, outcome, latency_ms, question_hash, question_salt, "
                "details, prev_hash, hash, chain, prev_seq) SELECT 4, time, tenant, key_id, "
                "use_case, action, document_ids, model, outcome, latency_ms, question_hash, "
                "question_salt, details, :prev, :h, chain, 3 FROM audit_records WHERE seq = 3"
            ),
            {"prev": last.hash, "h": record_hash(forged)},
        )
    assert kinds(log) == [(4, BROKEN_LINK)]


def test_concurrent_appends_from_two_processes(db: DbTarget) -> None:
    log = AuditLog(db.engine)  # creates the tables and the head before the workers start
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    per_worker = 40
    procs = [
        ctx.Process(target=audit_appender, args=(db.url, db.schema, w, per_worker, start))
        for w in (1, 2)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    report = log.verify()
    assert report.ok, report.problems
    assert report.checked == 2 * per_worker
    records = list(log.records())
    assert {r.tenant for r in records} == {"t1", "t2"}
    # both workers really interleaved (not one after the other) -- informative, not required
    switches = sum(1 for a, b in itertools.pairwise(records) if a.tenant != b.tenant)
    assert switches >= 1


def test_export_jsonl(db: DbTarget, tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(db.engine, clock=clock)
    fill(log, 6)
    path = tmp_path / "audit.jsonl"
    assert log.export_jsonl(path) == 6
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert first["seq"] == 1 and first["prev_hash"] == GENESIS_HASH
    assert first["question"] == "Question n°0 — délai ?"
    assert verify_jsonl_lines(lines) == []
    tampered = [*lines]
    data = json.loads(tampered[2])
    data["outcome"] = "DENIED"
    tampered[2] = json.dumps(data)
    assert [(p.seq, p.kind) for p in verify_jsonl_lines(tampered)] == [(3, ALTERED)]

    buf = io.StringIO()
    assert log.export_jsonl(buf, tenant="nord") == 3
    assert {json.loads(x)["tenant"] for x in buf.getvalue().splitlines()} == {"nord"}
    records = list(log.records())
    buf = io.StringIO()
    assert log.export_jsonl(buf, since=records[4].time) == 2
    assert [json.loads(x)["seq"] for x in buf.getvalue().splitlines()] == [5, 6]
