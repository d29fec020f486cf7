"""Quotas: limits, window reset, refusal details, and a store shared by several processes."""

from __future__ import annotations

import multiprocessing
import socket

import pytest

from docfactory.core.errors import InvalidArgument, ResourceExhausted
from docfactory.governance.policy import Policy, QuotaLimits
from docfactory.governance.quotas import (
    DAY,
    Increment,
    QuotaEnforcer,
    QuotaStore,
    RedisQuotaStore,
    SqlQuotaStore,
)
from tests.governance._workers import quota_consumer
from tests.governance.conftest import DbTarget
from tests.governance.test_policy import base_policy

T0 = 1_750_000_020.0  # a minute boundary (1_750_000_020 = 29_166_667 * 60)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def minute_start(t: float) -> float:
    return float(int(t // 60) * 60)


def run_enforcer_checks(store: QuotaStore) -> None:
    clock = Clock(minute_start(T0) + 15)
    q = QuotaEnforcer(store, clock=clock)
    limits = QuotaLimits(requests_per_minute=3, requests_per_day=5)
    for _ in range(3):
        q.consume(tenant="acme", use_case="faq", limits=limits)
    with pytest.raises(ResourceExhausted) as info:
        q.consume(tenant="acme", use_case="faq", limits=limits)
    err = info.value
    assert err.reason == "QUOTA_EXCEEDED"
    assert err.metadata["limit"] == "requests_per_minute"
    assert err.metadata["scope"] == "use_case" and err.metadata["limit_value"] == "3"
    assert err.retry_after_seconds == pytest.approx(45.0)
    # another use case and another tenant have their own counters
    q.consume(tenant="acme", use_case="other", limits=limits)
    q.consume(tenant="globex", use_case="faq", limits=limits)
    # a refused request consumed nothing
    assert q.usage(tenant="acme", use_case="faq", name="requests_per_minute") == 3
    # the minute window resets; the day limit then bites
    clock.now += 50
    q.consume(tenant="acme", use_case="faq", limits=limits)
    q.consume(tenant="acme", use_case="faq", limits=limits)
    with pytest.raises(ResourceExhausted) as day:
        q.consume(tenant="acme", use_case="faq", limits=limits)
    assert day.value.metadata["limit"] == "requests_per_day"
    day_end = (int(clock.now // DAY) + 1) * DAY
    assert day.value.retry_after_seconds == pytest.approx(day_end - clock.now)
    clock.now = day_end + 1  # next UTC day
    q.consume(tenant="acme", use_case="faq", limits=limits)


def test_limits_and_window_reset_sql(db: DbTarget) -> None:
    run_enforcer_checks(SqlQuotaStore(db.engine))


def test_tokens_per_day_and_tenant_quotas(db: DbTarget) -> None:
    clock = Clock(T0)
    q = QuotaEnforcer(SqlQuotaStore(db.engine), clock=clock)
    uc = QuotaLimits(tokens_per_day=1000)
    tenant = QuotaLimits(requests_per_minute=4)
    q.consume(tenant="acme", use_case="faq", limits=uc, tenant_limits=tenant, tokens=600)
    with pytest.raises(ResourceExhausted) as too_many:
        q.consume(tenant="acme", use_case="faq", limits=uc, tenant_limits=tenant, tokens=500)
    assert too_many.value.metadata["limit"] == "tokens_per_day"
    q.record_tokens(tenant="acme", use_case="faq", tokens=400)  # actual usage, never refused
    assert q.usage(tenant="acme", use_case="faq", name="tokens_per_day") == 1000
    with pytest.raises(ResourceExhausted):  # budget spent: even a 0-token estimate is refused
        q.consume(tenant="acme", use_case="faq", limits=uc, tenant_limits=tenant)
    # tenant-wide limit across use cases
    q.consume(tenant="acme", use_case="a", limits=QuotaLimits(), tenant_limits=tenant)
    q.consume(tenant="acme", use_case="b", limits=QuotaLimits(), tenant_limits=tenant)
    q.consume(tenant="acme", use_case="c", limits=QuotaLimits(), tenant_limits=tenant)
    with pytest.raises(ResourceExhausted) as tenant_err:
        q.consume(tenant="acme", use_case="d", limits=QuotaLimits(), tenant_limits=tenant)
    assert tenant_err.value.metadata["scope"] == "tenant"
    with pytest.raises(InvalidArgument):
        q.consume(tenant="acme", use_case="d", limits=QuotaLimits(), tokens=-1)


def test_consume_for_a_policy_decision(db: DbTarget) -> None:
    policy = Policy.from_mapping(base_policy())
    decision = policy.authorize("caisse-nord", "app-credit-2026", "credit-faq")
    q = QuotaEnforcer(SqlQuotaStore(db.engine), clock=Clock(T0))
    for _ in range(60):
        q.consume_for(decision)
    with pytest.raises(ResourceExhausted) as info:
        q.consume_for(decision)
    assert info.value.metadata["limit"] == "requests_per_minute"
    assert q.usage(tenant="caisse-nord", use_case=None, name="requests_per_day") == 60


def test_sql_store_is_all_or_nothing_and_purges(db: DbTarget) -> None:
    store = SqlQuotaStore(db.engine)
    ok = Increment("a", 0, 60, 1, 5)
    over = Increment("b", 0, 60, 3, 2)
    assert store.apply([ok, over]) == 1
    assert store.total("a", 0) == 0 and store.total("b", 0) == 0
    assert store.apply([ok, Increment("b", 0, 60, 2, 2)]) is None
    assert store.total("a", 0) == 1 and store.total("b", 0) == 2
    assert store.purge(now=30) == 0
    assert store.purge(now=61) == 2
    assert store.total("a", 0) == 0


def test_two_processes_share_the_quota_exactly(db: DbTarget) -> None:
    SqlQuotaStore(db.engine)  # create the table before the workers start
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    limit, attempts = 37, 30
    now = minute_start(T0) + 1
    procs = [
        ctx.Process(
            target=quota_consumer, args=(db.url, db.schema, attempts, limit, now, start, out)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(a for a, _ in results) == limit
    assert sum(r for _, r in results) == 2 * attempts - limit
    assert all(a > 0 for a, _ in results)  # both processes got some of it
    q = QuotaEnforcer(SqlQuotaStore(db.engine, create_tables=False), clock=lambda: now)
    assert q.usage(tenant="acme", use_case="uc", name="requests_per_minute") == limit


# -- Redis (optional backend) --------------------------------------------------------------


def _redis_client() -> object:
    redis = pytest.importorskip("redis", reason="redis-py not installed: Redis backend skipped")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        pytest.skip(f"Redis unreachable at 127.0.0.1:6379: {exc}")
    return redis.Redis(host="127.0.0.1", port=6379)


def test_limits_and_window_reset_redis() -> None:
    import uuid

    client = _redis_client()
    prefix = f"docfactory-test:{uuid.uuid4().hex}:"
    try:
        run_enforcer_checks(RedisQuotaStore(client, prefix=prefix))
    finally:
        for key in client.scan_iter(match=prefix + "*"):  # type: ignore[attr-defined]
            client.delete(key)  # type: ignore[attr-defined]
