"""Quotas: requests and tokens per tenant and per use case, per minute and per day.

Fixed windows aligned on the epoch (minutes; UTC days), counted in a store every replica
shares:

- :class:`SqlQuotaStore` -- table ``governance_quota_counters`` (counter key, window start,
  total), one transaction per request: ``INSERT ... ON CONFLICT DO UPDATE SET total = total +
  n RETURNING total`` for each counter, rolled back when one would exceed its limit (so a
  refused request consumes nothing). PostgreSQL serializes concurrent increments of a counter
  on its row lock (counters are taken in a fixed order: no deadlock); SQLite on ``BEGIN
  IMMEDIATE``. Allowed requests never exceed the limit, whatever the number of processes.
- :class:`RedisQuotaStore` -- the same check-then-increment as one Lua script (atomic in
  Redis); keys expire with their window. Needs redis-py (``pip install redis``).

Use-case counters are per (tenant, use case): a use case shared by two tenants gives each its
own quota. Tenant counters (``tenants[].quotas`` in the policy) cap the tenant over all its
use cases.

Tokens are known after the answer: ``consume(requests=1, tokens=estimate)`` before (refused
once the day's token budget is spent), then ``record_tokens(actual - estimate)`` after, which
never refuses (the next request will be).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import BigInteger, String, Table, delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from docfactory.core.db import Base
from docfactory.core.errors import InvalidArgument, ResourceExhausted
from docfactory.core.migrate import ensure_schema
from docfactory.governance._sql import upsert, write_transaction
from docfactory.governance.policy import Decision, QuotaLimits

MINUTE = 60
DAY = 86400


@dataclass(frozen=True)
class Increment:
    """Add ``amount`` to one counter window unless that would exceed ``limit``.

    With ``amount == 0`` and a limit, the counter is only checked: refused when already at
    or above the limit (a spent token budget).
    """

    key: str
    window_start: int
    window_s: int
    amount: int
    limit: int | None
    name: str = ""
    scope: str = ""

    def violated_by(self, total_after: int) -> bool:
        if self.limit is None:
            return False
        if self.amount == 0:
            return total_after >= self.limit
        return total_after > self.limit


class QuotaStore(Protocol):
    def apply(self, increments: Sequence[Increment]) -> int | None:
        """Apply all increments atomically, or none: returns the index of the first violated
        increment (nothing applied), else None (all applied)."""
        ...

    def total(self, key: str, window_start: int) -> int: ...


# ---------------------------------------------------------------------------------------------
# SQL store
# ---------------------------------------------------------------------------------------------


class QuotaCounterRow(Base):
    __tablename__ = "governance_quota_counters"

    counter_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    total: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


_COUNTERS = cast(Table, QuotaCounterRow.__table__)


class _Refused(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class SqlQuotaStore:
    def __init__(self, engine: Engine, *, create_tables: bool = True) -> None:
        self._engine = engine
        if create_tables:
            ensure_schema(engine)

    def apply(self, increments: Sequence[Increment]) -> int | None:
        if not increments:
            return None
        order = sorted(
            range(len(increments)),
            key=lambda i: (increments[i].key, increments[i].window_start),
        )
        try:
            with write_transaction(self._engine) as conn:
                for i in order:
                    inc = increments[i]
                    stmt = upsert(conn, _COUNTERS).values(
                        counter_key=inc.key,
                        window_start=inc.window_start,
                        total=inc.amount,
                        expires_at=inc.window_start + inc.window_s,
                    )
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["counter_key", "window_start"],
                        set_={"total": _COUNTERS.c.total + stmt.excluded.total},
                    ).returning(_COUNTERS.c.total)
                    total_after = int(conn.execute(stmt).scalar_one())
                    if inc.violated_by(total_after):
                        raise _Refused(i)  # rolls the whole transaction back
        except _Refused as refused:
            return refused.index
        return None

    def total(self, key: str, window_start: int) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                _COUNTERS.select()
                .with_only_columns(_COUNTERS.c.total)
                .where(_COUNTERS.c.counter_key == key)
                .where(_COUNTERS.c.window_start == window_start)
            ).scalar_one_or_none()
        return int(value or 0)

    def purge(self, now: float | None = None) -> int:
        """Delete the counters of windows ended before ``now``; returns how many."""
        moment = int(now if now is not None else time.time())
        with write_transaction(self._engine) as conn:
            result = conn.execute(delete(_COUNTERS).where(_COUNTERS.c.expires_at < moment))
            return int(result.rowcount or 0)


# ---------------------------------------------------------------------------------------------
# Redis store
# ---------------------------------------------------------------------------------------------

_LUA = """
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  local amount = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  if limit >= 0 then
    if (amount > 0 and cur + amount > limit) or (amount == 0 and cur >= limit) then
      return i
    end
  end
end
for i = 1, #KEYS do
  local amount = tonumber(ARGV[3 * i - 2])
  if amount > 0 then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3 * i]))
  end
end
return 0
"""


class RedisQuotaStore:
    """Counters in Redis (one Lua script per request: atomic). Not for Redis Cluster."""

    def __init__(self, client: Any, *, prefix: str = "docfactory:quota:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "docfactory:quota:") -> RedisQuotaStore:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from docfactory.core.errors import ConfigError

            raise ConfigError("the Redis quota store needs redis-py: pip install redis") from exc
        return cls(redis.Redis.from_url(url), prefix=prefix)

    def _key(self, key: str, window_start: int) -> str:
        return f"{self._prefix}{key}:{window_start}"

    def apply(self, increments: Sequence[Increment]) -> int | None:
        if not increments:
            return None
        keys = [self._key(inc.key, inc.window_start) for inc in increments]
        args: list[int] = []
        for inc in increments:
            # keep a window a little past its end so clocks slightly apart agree
            ttl = inc.window_s + 60
            args += [inc.amount, -1 if inc.limit is None else inc.limit, ttl]
        result = int(self._script(keys=keys, args=args))
        return None if result == 0 else result - 1

    def total(self, key: str, window_start: int) -> int:
        value = self._client.get(self._key(key, window_start))
        return int(value or 0)


# ---------------------------------------------------------------------------------------------
# Enforcer
# ---------------------------------------------------------------------------------------------

_RULES: tuple[tuple[str, int, str], ...] = (
    ("requests_per_minute", MINUTE, "requests"),
    ("requests_per_day", DAY, "requests"),
    ("tokens_per_day", DAY, "tokens"),
)


class QuotaEnforcer:
    """Checks and counts requests and tokens against a policy's quota limits."""

    def __init__(self, store: QuotaStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    @property
    def store(self) -> QuotaStore:
        return self._store

    @staticmethod
    def counter_key(tenant: str, use_case: str | None, name: str) -> str:
        return f"t:{tenant}:{name}" if use_case is None else f"u:{tenant}:{use_case}:{name}"

    def consume(
        self,
        *,
        tenant: str,
        use_case: str,
        limits: QuotaLimits,
        tenant_limits: QuotaLimits | None = None,
        requests: int = 1,
        tokens: int = 0,
    ) -> None:
        """Count ``requests`` and ``tokens``; ResourceExhausted QUOTA_EXCEEDED when a limit of
        the use case (for this tenant) or of the tenant would be exceeded -- nothing is counted
        then. ``retry_after_seconds``: until the window of the exceeded limit resets."""
        if requests < 0 or tokens < 0:
            raise InvalidArgument("quota amounts must not be negative")
        now = self._clock()
        scopes: list[tuple[str, str | None, QuotaLimits]] = [("use_case", use_case, limits)]
        if tenant_limits is not None:
            scopes.append(("tenant", None, tenant_limits))
        increments: list[Increment] = []
        for scope, uc, lim in scopes:
            for name, window_s, unit in _RULES:
                limit = cast(int | None, getattr(lim, name))
                if limit is None:
                    continue
                amount = requests if unit == "requests" else tokens
                increments.append(
                    Increment(
                        key=self.counter_key(tenant, uc, name),
                        window_start=_window_start(now, window_s),
                        window_s=window_s,
                        amount=amount,
                        limit=limit,
                        name=name,
                        scope=scope,
                    )
                )
        violated = self._store.apply(increments)
        if violated is None:
            return
        inc = increments[violated]
        retry_after = max(0.0, inc.window_start + inc.window_s - now)
        owner = (
            f"use case {use_case!r} of tenant {tenant!r}"
            if inc.scope == "use_case"
            else (f"tenant {tenant!r}")
        )
        raise ResourceExhausted(
            f"quota {inc.name}={inc.limit} of {owner} exceeded; "
            f"retry in {math.ceil(retry_after)} s",
            reason="QUOTA_EXCEEDED",
            metadata={
                "limit": inc.name,
                "limit_value": str(inc.limit),
                "scope": inc.scope,
                "tenant": tenant,
                "use_case": use_case,
            },
            retry_after_seconds=retry_after,
        )

    def consume_for(self, decision: Decision, *, requests: int = 1, tokens: int = 0) -> None:
        """``consume`` with the limits of an authorization decision."""
        self.consume(
            tenant=decision.tenant,
            use_case=decision.use_case,
            limits=decision.quotas,
            tenant_limits=decision.tenant_quotas,
            requests=requests,
            tokens=tokens,
        )

    def record_tokens(self, *, tenant: str, use_case: str, tokens: int) -> None:
        """Add tokens used (after the answer) to the day's counters; never refuses."""
        if tokens <= 0:
            return
        now = self._clock()
        start = _window_start(now, DAY)
        self._store.apply(
            [
                Increment(
                    key=self.counter_key(tenant, uc, "tokens_per_day"),
                    window_start=start,
                    window_s=DAY,
                    amount=tokens,
                    limit=None,
                )
                for uc in (use_case, None)
            ]
        )

    def usage(self, *, tenant: str, use_case: str | None, name: str) -> int:
        """Current total of one counter (``use_case`` None: the tenant's)."""
        window_s = MINUTE if name == "requests_per_minute" else DAY
        return self._store.total(
            self.counter_key(tenant, use_case, name), _window_start(self._clock(), window_s)
        )


def _window_start(now: float, window_s: int) -> int:
    return int(now // window_s) * window_s
