"""Report figures equal figures recomputed independently from the records the test created
(SQLite and PostgreSQL), through the library and through ``docfactory report``."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docfactory.cli import main as cli_main
from docfactory.core.auth import Principal
from docfactory.governance.audit import AuditLog
from docfactory.measurement.feedback import USAGES
from docfactory.measurement.report import build_report
from docfactory.measurement.service import FeedbackInput, MeasurementService
from docfactory.measurement.usage import Period, load_usage
from tests.governance.conftest import DbTarget

START = dt.date(2025, 3, 3)
END = dt.date(2025, 3, 16)  # two ISO weeks
TENANTS = {"nord": ("uc-rh", "uc-juridique"), "sud": ("uc-rh",)}
KEYS = {"nord": ["k-n1", "k-n2", "k-n3"], "sud": ["k-s1", "k-s2"]}


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Event:
    time: dt.datetime
    tenant: str
    key: str
    use_case: str
    action: str
    outcome: str = "OK"
    docs: int = 0
    latency: int = 0
    insufficient: bool = False
    # feedback
    rating: int = 0
    useful: bool | None = None
    minutes: float = 0.0
    usage: str = ""
    answer_seq: int = 0


def populate(engine: Any) -> list[Event]:
    """Random activity from 2 days before START to 2 days after END; returns what it wrote."""
    rng = random.Random(20250303)
    clock = Clock()
    audit = AuditLog(engine, clock=clock)
    service = MeasurementService(engine, audit, clock=clock)
    events: list[Event] = []
    answers: list[tuple[Event, int]] = []
    day = START - dt.timedelta(days=2)
    while day <= END + dt.timedelta(days=2):
        for _ in range(rng.randint(0, 9)):
            tenant = rng.choice(list(TENANTS))
            uc = rng.choice(TENANTS[tenant])
            key = rng.choice(KEYS[tenant])
            clock.now = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(
                seconds=rng.randint(0, 86399)
            )
            kind = rng.choices(["ANSWER", "SEARCH", "DENIED", "REVIEW_DECISION"], [6, 3, 1, 1])[0]
            ev = Event(clock.now, tenant, key, uc, kind)
            if kind == "ANSWER":
                ev.outcome = rng.choice(["OK", "OK", "OK", "PENDING_REVIEW", "INTERNAL"])
                ev.docs = rng.choice([0, 1, 2, 3]) if ev.outcome != "INTERNAL" else 0
                ev.latency = rng.randint(40, 4000)
                ev.insufficient = ev.outcome == "OK" and ev.docs == 0 and rng.random() < 0.5
            elif kind == "REVIEW_DECISION":
                ev.outcome = rng.choice(["APPROVED", "AMENDED", "REJECTED"])
            elif kind == "DENIED":
                ev.outcome = rng.choice(["UNKNOWN_USE_CASE", "QUOTA_EXCEEDED"])
            rec = audit.append(
                tenant=tenant,
                key_id=key,
                use_case=uc,
                action=kind,
                outcome=ev.outcome,
                document_ids=[f"doc-{i}" for i in range(ev.docs)],
                latency_ms=ev.latency,
                details={"insufficient_context": True} if ev.insufficient else {},
            )
            events.append(ev)
            if kind == "ANSWER":
                answers.append((ev, rec.seq))
            # some feedback a few hours later (possibly the next day, or past END)
            if kind == "ANSWER" and rng.random() < 0.6:
                saved = clock.now
                clock.now = saved + dt.timedelta(hours=rng.randint(0, 30))
                giver = rng.choice(KEYS[tenant])
                fb = FeedbackInput(
                    answer_audit_seq=rec.seq,
                    useful=rng.choice([True, False, None]),
                    rating=rng.choice([0, 1, 2, 3, 4, 5, 5, 4]),
                    time_saved_minutes=rng.choice([0.0, 5.0, 10.0, 12.5, 30.0]),
                    usage=rng.choice(["", *USAGES]),
                    comment="ok",
                )
                service.submit(Principal(tenant, giver, ""), fb)
                events.append(
                    Event(
                        clock.now,
                        tenant,
                        giver,
                        uc,
                        "FEEDBACK",
                        rating=fb.rating,
                        useful=fb.useful,
                        minutes=fb.time_saved_minutes,
                        usage=fb.usage,
                        answer_seq=rec.seq,
                    )
                )
                clock.now = saved
        day += dt.timedelta(days=1)
    return events


def expected(events: list[Event], tenant: str | None, use_case: str | None) -> dict[str, Any]:
    """The figures, recomputed from the test's own list of events."""
    start = dt.datetime.combine(START, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    sel = [
        e
        for e in events
        if start <= e.time < end
        and (tenant is None or e.tenant == tenant)
        and (use_case is None or e.use_case == use_case)
    ]
    answers = [e for e in sel if e.action == "ANSWER"]
    completed = [e for e in answers if e.outcome in ("OK", "PENDING_REVIEW")]
    searches = [e for e in sel if e.action == "SEARCH"]
    denied = [e for e in sel if e.action == "DENIED"]
    reviews = [e for e in sel if e.action == "REVIEW_DECISION"]
    fbs = [e for e in sel if e.action == "FEEDBACK"]
    rated = [e.rating for e in fbs if e.rating]
    verdicts = [e.useful for e in fbs if e.useful is not None]
    users_day: dict[str, set[str]] = defaultdict(set)
    for e in sel:
        if e.action in ("ANSWER", "SEARCH", "FEEDBACK"):
            users_day[e.time.date().isoformat()].add(e.key)
    lat = [e.latency for e in completed]
    requests = len(answers) + len(searches) + len(denied)
    return {
        "active_users": len({e.key for e in sel if e.action in ("ANSWER", "SEARCH", "FEEDBACK")}),
        "questions": len(answers),
        "searches": len(searches),
        "denied": len(denied),
        "feedback": len(fbs),
        "answers_with_feedback": len({e.answer_seq for e in fbs}),
        "mean_rating": sum(rated) / len(rated) if rated else None,
        "useful_rate": sum(verdicts) / len(verdicts) if verdicts else None,
        "time_saved_minutes": sum(e.minutes for e in fbs),
        "citation_rate": (sum(1 for e in completed if e.docs) / len(completed))
        if completed
        else None,
        "refusal_rate": (len(denied) + sum(e.insufficient for e in answers)) / requests
        if requests
        else None,
        "review_approval_rate": (
            sum(e.outcome in ("APPROVED", "AMENDED") for e in reviews) / len(reviews)
        )
        if reviews
        else None,
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
        "latency_p95_ms": float(np.percentile(lat, 95)) if lat else None,
        "used_as_is": sum(e.usage == "USED_AS_IS" for e in fbs),
        "edited": sum(e.usage == "EDITED" for e in fbs),
        "discarded": sum(e.usage == "DISCARDED" for e in fbs),
        "daily_users": {d: len(k) for d, k in users_day.items()},
        "daily_questions": {
            d: sum(1 for e in answers if e.time.date().isoformat() == d)
            for d in {e.time.date().isoformat() for e in answers}
        },
        "weekly_users": {
            w: len(
                {
                    e.key
                    for e in sel
                    if e.action in ("ANSWER", "SEARCH", "FEEDBACK")
                    and "{}-W{:02d}".format(*e.time.date().isocalendar()[:2]) == w
                }
            )
            for w in ("2025-W10", "2025-W11")
        },
    }


def check(record: dict[str, Any], exp: dict[str, Any]) -> None:
    for k, v in exp.items():
        if k == "daily_users":
            got = {d["date"]: d["active_users"] for d in record["daily"] if d["active_users"]}
            assert got == v
        elif k == "daily_questions":
            got = {d["date"]: d["questions"] for d in record["daily"] if d["questions"]}
            assert got == v
        elif k == "weekly_users":
            assert {w["week"]: w["active_users"] for w in record["weekly"]} == v
        elif isinstance(v, float):
            assert record[k] == pytest.approx(v), k
        else:
            assert record[k] == v, k


def test_report_figures_equal_independent_recomputation(db: DbTarget) -> None:
    events = populate(db.engine)
    assert sum(e.action == "FEEDBACK" for e in events) > 20
    period = Period(START, END)
    data = load_usage(AuditLog(db.engine), _store(db.engine), period)
    report = build_report(data)
    check(report["overall"], expected(events, None, None))
    groups = {(g["tenant"], g["use_case"]): g for g in report["groups"]}
    assert set(groups) == {("nord", "uc-rh"), ("nord", "uc-juridique"), ("sud", "uc-rh")}
    for (t, uc), g in groups.items():
        check(g, expected(events, t, uc))
    for t in report["tenants"]:
        check(t, expected(events, t["tenant"], None))
    assert report["overall"]["daily"][0]["date"] == START.isoformat()
    assert len(report["overall"]["daily"]) == 14
    # filtered selections
    only = build_report(
        load_usage(AuditLog(db.engine), _store(db.engine), period, tenant="nord", use_case="uc-rh")
    )
    check(only["overall"], expected(events, "nord", "uc-rh"))


def _store(engine: Any) -> Any:
    from docfactory.measurement.feedback import FeedbackStore

    return FeedbackStore(engine)


def test_cli_report_writes_the_same_figures(
    tmp_path: Path, no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    from docfactory.core.db import make_engine

    engine = make_engine(url)
    events = populate(engine)
    engine.dispose()
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(
        json.dumps(
            {
                "dataset": "piaf",
                "format": "squad",
                "evaluated_queries": 200,
                "modes": [
                    {
                        "mode": "bm25",
                        "queries": 200,
                        "recall@5": 0.71,
                        "ndcg@10": 0.6,
                        "mrr@10": 0.55,
                    },
                    {
                        "mode": "hybrid",
                        "queries": 200,
                        "recall@5": 0.83,
                        "ndcg@10": 0.7,
                        "mrr@10": 0.66,
                    },
                ],
            }
        )
    )
    monkeypatch.setenv("DOCFACTORY_DATABASE_URL", url)
    monkeypatch.setenv("DOCFACTORY_DATA_DIR", str(tmp_path / "data"))
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    rc = cli_main(
        [
            "report",
            "--from",
            START.isoformat(),
            "--to",
            END.isoformat(),
            "--tenant",
            "nord",
            "--json",
            str(out_json),
            "--out",
            str(out_html),
            "--eval",
            str(tmp_path),
        ]
    )
    assert rc == 0
    report = json.loads(out_json.read_text())
    check(report["overall"], expected(events, "nord", None))
    assert {g["tenant"] for g in report["groups"]} == {"nord"}
    assert [m["mode"] for m in report["quality"]["modes"]] == ["bm25", "hybrid"]
    html = out_html.read_text()
    assert html.count('<img class="chart"') >= 5 and "Temps gagné" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert cli_main(["report", "--from", "2025-03-10", "--to", "2025-03-01"]) == 2
