"""The ``docfactory report`` subcommand: reads the metadata database directly (no server)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from docfactory.core.config import Settings


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "report",
        help="usage, satisfaction, time saved and quality report (HTML + JSON)",
        description="Reads the audit log and the feedback of the metadata database "
        "(DOCFACTORY_DATABASE_URL) and writes a self-contained HTML report and/or its JSON.",
    )
    r.add_argument("--from", dest="from_date", default="", help="first day YYYY-MM-DD (UTC)")
    r.add_argument("--to", dest="to_date", default="", help="last day YYYY-MM-DD (default today)")
    r.add_argument("--tenant", help="one subsidiary (tenant) only")
    r.add_argument("--use-case", help="one use case only")
    r.add_argument("--out", help="HTML report path (default report.html unless --json only)")
    r.add_argument("--json", dest="json_out", help="JSON report path")
    r.add_argument(
        "--eval", help="docfactory eval JSON results, or a folder (its newest results file)"
    )


def _run(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.core.db import make_engine
    from docfactory.governance.audit import AuditLog
    from docfactory.measurement.feedback import FeedbackStore
    from docfactory.measurement.report import build_report, latest_eval, load_eval, write_report
    from docfactory.measurement.usage import Period, load_usage

    period = Period.parse(ns.from_date, ns.to_date)
    engine = make_engine(settings.resolved_database_url)
    try:
        data = load_usage(
            AuditLog(engine),
            FeedbackStore(engine),
            period,
            tenant=ns.tenant,
            use_case=ns.use_case,
        )
        from docfactory.workflows.repo import WorkflowRepository

        dossiers = WorkflowRepository(engine).stats(
            ns.tenant, period.start_time.timestamp(), period.end_time.timestamp()
        )
    finally:
        engine.dispose()
    quality = None
    if ns.eval:
        found = latest_eval(Path(ns.eval))
        if found is None:
            print(f"docfactory: no eval results in {ns.eval}", file=sys.stderr)
            return 2
        quality = load_eval(found)
    report = build_report(
        data, tenant=ns.tenant, use_case=ns.use_case, quality=quality, dossiers=dossiers
    )
    html_path = Path(ns.out) if ns.out else (None if ns.json_out else Path("report.html"))
    json_path = Path(ns.json_out) if ns.json_out else None
    write_report(report, html_path=html_path, json_path=json_path)
    o = report["overall"]
    print(
        f"report {period.start} .. {period.end}: {o['active_users']} active users, "
        f"{o['questions']} questions, {o['feedback']} feedback, "
        f"{o['time_saved_minutes']:.0f} min saved, {dossiers['runs']} dossier runs"
        + (f" -> {html_path}" if html_path else "")
        + (f" -> {json_path}" if json_path else "")
    )
    return 0


async def cmd_report(ns: argparse.Namespace, settings: Settings) -> int:
    return await asyncio.to_thread(_run, ns, settings)
