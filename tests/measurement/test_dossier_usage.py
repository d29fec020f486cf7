"""Usage counts only user actions (worker keys' searches, refused clicks apart) and the dossier
figures: time to decision from the run's start (not its queue time), approval rate with
INCOMPLETE runs in the denominator, fields corrected per field name."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from docfactory.governance.audit import AuditRecord
from docfactory.measurement.dossiers import Decision, RunFacts, dossier_usage
from docfactory.measurement.usage import Period, aggregate

DAY = dt.date(2025, 3, 10)
T = dt.datetime(2025, 3, 10, 9, tzinfo=dt.UTC)


def rec(seq: int, action: str, key: str, outcome: str = "OK", **details: Any) -> AuditRecord:
    return AuditRecord(
        seq=seq, time=T + dt.timedelta(minutes=seq), tenant="nord", key_id=key, use_case="uc",
        action=action, document_ids=(), model="", outcome=outcome, latency_ms=10,
        question_hash=None, question_salt=None, details=details, prev_hash="", hash="",
    )  # fmt: skip


def test_worker_searches_and_refused_clicks_are_not_user_actions() -> None:
    records = [
        rec(1, "SEARCH", "app-nord"),
        rec(2, "SEARCH", "bulk-worker"),  # a dossier's rule retrieval, acting for nord
        rec(3, "SEARCH", "bulk-worker"),
        rec(4, "ANSWER", "app-nord"),
        rec(5, "DENIED", "app-nord", "USE_CASE_NOT_ALLOWED"),  # answering: no rpc
        rec(6, "DENIED", "reviewer-a", "SAME_REVIEWER", rpc="SubmitDecision"),
        rec(7, "DENIED", "app-nord", "QUOTA", rpc="Search"),
    ]
    out = aggregate(
        "nord", "uc", records, [], Period(DAY, DAY), internal_keys=frozenset({"bulk-worker"})
    )
    assert (out.searches, out.internal_searches, out.questions) == (1, 2, 1)
    assert (out.denied, out.denied_other) == (2, 1)
    assert out.active_users == 1  # the worker is not a user
    assert out.refusal_rate == pytest.approx(2 / (1 + 1 + 2))


def _run(state: str, created: float, started: float | None, finished: float | None,
         *decisions: Decision) -> RunFacts:  # fmt: skip
    return RunFacts("r", "nord", "uc", state, created, started, finished, tuple(decisions))


def test_dossier_figures() -> None:
    runs = [
        # queued 600 s, then 100 s to its release
        _run(
            "COMPLETED",
            0,
            600,
            700,
            Decision("APPROVE"),
            Decision("AMEND", ("demande.montant", "rib.iban")),
        ),
        _run("REJECTED", 0, 10, 310, Decision("REJECT")),
        _run("INCOMPLETE", 0, 5, 6),
        _run("AWAITING_SIGNOFF", 0, 5, None, Decision("AMEND", ("demande.montant",))),
    ]
    d = dossier_usage(runs)
    assert d.runs == 4 and d.by_state["COMPLETED"] == 1
    assert d.approval_rate == pytest.approx(1 / 3)  # the INCOMPLETE run counts
    assert d.decided_timed == 2 and d.median_decision_seconds == pytest.approx(200.0)
    assert (d.approvals, d.rejections) == (3, 1)
    assert d.fields_corrected == {"demande.montant": 2, "rib.iban": 1}
    assert dossier_usage([]).approval_rate is None
