"""Audit chains per tenant: appends of different tenants never wait on one row lock, shards
spread one tenant over several chains, anchors catch a chain rewritten together with its head,
and records of the single pre-chain log (legacy chain) still verify next to the new chains."""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import text

from docfactory.governance._sql import write_transaction
from docfactory.governance.audit import (
    ANCHOR_MISMATCH,
    GENESIS_HASH,
    LEGACY_CHAIN,
    MISSING,
    AuditLog,
    AuditRecord,
    record_hash,
)
from tests.governance.conftest import DbTarget


def _append(log: AuditLog, tenant: str, i: int = 0) -> AuditRecord:
    return log.append(tenant=tenant, key_id="k", use_case="uc", action="SEARCH", latency_ms=i)


def test_other_tenants_do_not_wait_on_a_locked_chain(db: DbTarget) -> None:
    """A transaction holds tenant A's chain head (as a slow append would): B's append goes
    through at once; A's waits for the lock (PostgreSQL; SQLite serialises all writers)."""
    log = AuditLog(db.engine)
    _append(log, "a")
    _append(log, "b")
    if db.kind != "postgresql":
        assert log.verify().ok
        return
    other = AuditLog(db.new_engine(), create_tables=False)
    held = threading.Event()
    release = threading.Event()

    def hold_a() -> None:
        with write_transaction(db.new_engine()) as conn:
            log._lock_chain(conn, "a")
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_a)
    holder.start()
    assert held.wait(10)
    started = time.monotonic()
    _append(other, "b", 1)  # not blocked by A's lock
    b_seconds = time.monotonic() - started
    done_a = threading.Event()

    def append_a() -> None:
        _append(other, "a", 1)
        done_a.set()

    waiter = threading.Thread(target=append_a)
    waiter.start()
    assert not done_a.wait(1.0), "tenant A's append should wait for A's chain lock"
    release.set()
    holder.join(10)
    assert done_a.wait(10)
    waiter.join(10)
    assert b_seconds < 1.0, b_seconds
    report = log.verify()
    assert report.ok, report.problems
    assert set(log.chains()) == {"a", "b"}


def test_shards_split_one_tenant_over_several_chains(db: DbTarget) -> None:
    log = AuditLog(db.engine, shards=4)
    for i in range(40):
        _append(log, "nord", i)
    chains = log.chains()
    assert len(chains) > 1 and all(c.startswith("nord#") for c in chains)
    report = log.verify()
    assert report.ok and report.checked == 40, report.problems
    # deleting a record in the middle of one shard is still reported
    victim = next(r for r in log.records() if r.prev_seq is not None)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": victim.prev_seq})
    assert (victim.prev_seq, MISSING) in [(p.seq, p.kind) for p in log.verify().problems]


def test_anchor_catches_a_truncated_chain_with_a_rewritten_head(db: DbTarget) -> None:
    log = AuditLog(db.engine, anchor_every=4)
    for i in range(12):
        _append(log, "nord" if i % 2 else "sud", i)
    report = log.verify()
    assert report.ok, report.problems
    assert "3 anchor(s) checked" in report.notes
    # An insider removes nord's last records and moves nord's head back consistently:
    # the chain itself verifies, but the anchors remember the old head.
    nord = [r for r in log.records() if r.tenant == "nord"]
    keep = nord[-3]
    with db.engine.begin() as conn:
        conn.execute(
            text("DELETE FROM audit_records WHERE chain = 'nord' AND seq > :s"), {"s": keep.seq}
        )
        conn.execute(
            text("UPDATE audit_chains SET seq = :s, hash = :h WHERE chain = 'nord'"),
            {"s": keep.seq, "h": keep.hash},
        )
    problems = log.verify().problems
    assert problems and {p.kind for p in problems} == {ANCHOR_MISMATCH}, problems
    assert {p.chain for p in problems} == {"nord"}


def test_legacy_records_verify_beside_the_chains(db: DbTarget) -> None:
    """Records written before chains (original format, chain "") keep verifying."""
    log = AuditLog(db.engine)
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    prev = GENESIS_HASH
    with db.engine.begin() as conn:
        for seq in (1, 2, 3):
            rec = AuditRecord(
                seq=seq, time=when, tenant="nord", key_id="k", use_case="uc", action="SEARCH",
                document_ids=(), model="", outcome="OK", latency_ms=seq, question_hash=None,
                question_salt=None, details={}, prev_hash=prev, hash="",
            )  # fmt: skip
            digest = record_hash(rec.chained())
            assert "chain" not in rec.chained()  # the original format
            conn.execute(
                text(
                    "INSERT INTO audit_records (seq, time, tenant, key_id, use_case, action, "
                    "document_ids, model, outcome, latency_ms, details, prev_hash, hash, chain) "
                    "VALUES (:seq, :t, 'nord', 'k', 'uc', 'SEARCH', '[]', '', 'OK', :seq, '{}', "
                    ":prev, :h, '')"
                ),
                {"seq": seq, "t": when, "prev": prev, "h": digest},
            )
            prev = digest
        conn.execute(
            text("INSERT INTO audit_chains (chain, seq, hash) VALUES ('', 3, :h)"), {"h": prev}
        )
        if db.kind == "postgresql":
            conn.execute(text("SELECT setval('audit_records_seq', 4, false)"))
    new = _append(log, "nord")
    assert new.seq == 4 and new.chain == "nord" and new.prev_hash == GENESIS_HASH
    report = log.verify()
    assert report.ok and report.checked == 4, report.problems
    assert log.chains()[LEGACY_CHAIN] == (3, prev)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq = 2"))
    assert [(p.seq, p.kind) for p in log.verify().problems] == [(2, MISSING)]
