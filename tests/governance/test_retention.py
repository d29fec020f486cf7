"""Question texts are purged once their use case's retention has passed: on a schedule in the
serving process, and at start (time travel with an injected clock; the chain still verifies)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from docfactory.app import start_server
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.governance.retention import RetentionPurger

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def _append(audit: AuditLog, question: str, hours: int) -> int:
    rec = audit.append(
        tenant="acme",
        key_id="acme-app",
        use_case="uc",
        action="ANSWER",
        question=question,
        question_retention=dt.timedelta(hours=hours),
    )
    return int(rec.seq)


def test_purge_after_retention_with_time_travel(tmp_path: Path) -> None:
    now = [T0]
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    audit = AuditLog(engine, clock=lambda: now[0])
    short = _append(audit, "Quel est le délai de rétractation ?", hours=1)
    long = _append(audit, "Qui convoque le CSE ?", hours=48)
    purger = RetentionPurger(audit, clock=lambda: now[0])

    def questions() -> dict[int, str | None]:
        return {r.seq: r.question for r in audit.records()}

    now[0] = T0 + dt.timedelta(minutes=59)
    assert purger.run_once() == 0
    assert questions()[short] is not None
    now[0] = T0 + dt.timedelta(hours=2)
    assert purger.run_once() == 1
    assert questions() == {short: None, long: "Qui convoque le CSE ?"}
    now[0] = T0 + dt.timedelta(days=3)
    assert purger.run_once() == 1 and purger.purged == 2
    assert set(questions().values()) == {None}
    assert audit.verify().ok  # the text is outside the chain: purging keeps it intact
    engine.dispose()


async def test_server_purges_on_its_schedule(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(server={"retention_purge_seconds": 0.2})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    # A record written two days ago whose one-hour retention has long expired.
    past = AuditLog(engine, clock=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    seq = _append(past, "texte à purger", hours=1)
    running = await start_server(settings, port=0)
    try:
        for _ in range(50):
            rec = next(r for r in AuditLog(engine, create_tables=False).records() if r.seq == seq)
            if rec.question is None:
                break
            await asyncio.sleep(0.1)
        assert rec.question is None
    finally:
        await running.stop(0.5)
        engine.dispose()
