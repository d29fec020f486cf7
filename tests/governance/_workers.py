"""Worker processes (spawned) for the multi-process governance tests."""

from __future__ import annotations

from typing import Any

from tests.governance._db import engine_for


def audit_appender(url: str, schema: str | None, worker: int, count: int, start: Any) -> None:
    from docfactory.governance.audit import AuditLog

    engine = engine_for(url, schema)
    log = AuditLog(engine, create_tables=False)
    start.wait(60)
    for i in range(count):
        log.append(
            tenant=f"t{worker}",
            key_id=f"k{worker}",
            use_case="uc",
            action="SEARCH",
            document_ids=[f"d{worker}-{i}"],
            latency_ms=i,
            details={"worker": worker, "i": i},
        )
    engine.dispose()


def quota_consumer(
    url: str, schema: str | None, attempts: int, limit: int, now: float, start: Any, out: Any
) -> None:
    from docfactory.core.errors import ResourceExhausted
    from docfactory.governance.policy import QuotaLimits
    from docfactory.governance.quotas import QuotaEnforcer, SqlQuotaStore

    engine = engine_for(url, schema)
    enforcer = QuotaEnforcer(SqlQuotaStore(engine, create_tables=False), clock=lambda: now)
    allowed = refused = 0
    start.wait(60)
    for _ in range(attempts):
        try:
            enforcer.consume(
                tenant="acme", use_case="uc", limits=QuotaLimits(requests_per_minute=limit)
            )
            allowed += 1
        except ResourceExhausted:
            refused += 1
    out.put((allowed, refused))
    engine.dispose()
