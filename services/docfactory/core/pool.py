"""Endpoint pool for OpenAI-compatible HTTP backends (vLLM chat and embedding servers).

Used by both ``OpenAIChatGenerator`` and ``OpenAIEmbeddingModel``:

- replicas from a static list of base URLs (``http://10.0.0.7:8000/v1``) or from DNS: an entry
  ``dns+http://vllm-chat-headless.docfactory.svc:8000/v1`` resolves the name to every address
  (a Kubernetes headless Service lists one A record per ready pod) and is re-resolved every
  ``dns_refresh_seconds``;
- least-outstanding-requests balancing (ties broken round-robin);
- active health checks (``GET /health`` at the server root, falling back to ``GET /v1/models``
  for servers without ``/health``) in one background thread, and passive ejection: a refused
  connection ejects a replica at once, other failures after ``eject_after_errors`` in a row; an
  ejected replica is re-admitted when a health check succeeds after its ejection time (which
  doubles on repeated ejections, capped at 60 s);
- a per-replica concurrency cap; when every replica is saturated the call fails at once with
  ``RESOURCE_EXHAUSTED`` / ``POOL_SATURATED``, when none is up with ``UNAVAILABLE`` /
  ``NO_HEALTHY_REPLICA``, both with a retry-after hint (never an unbounded queue);
- a failed attempt is retried on another replica only while nothing has been streamed to the
  caller; the gRPC deadline (``remaining_seconds()``) becomes the HTTP timeout; closing or
  cancelling a stream closes its HTTP connection, which makes vLLM abort the request.

The pool is thread-safe: the async path serves the answering stream, the blocking path serves
embedding calls made from worker threads. Both run one request path: ``_Call`` (replica choice,
retries, deadline) and ``_Attempt`` (outcome, ejection, error mapping) hold all the logic, and
each public method adds only its HTTP call.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client import Counter, Gauge

from docfactory.core.auth import remaining_seconds
from docfactory.core.errors import (
    DeadlineExceeded,
    DocfactoryError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)

log = logging.getLogger("docfactory.pool")

POOL_SATURATED = "POOL_SATURATED"
NO_HEALTHY_REPLICA = "NO_HEALTHY_REPLICA"
UPSTREAM_INTERRUPTED = "UPSTREAM_INTERRUPTED"
UPSTREAM_REJECTED = "UPSTREAM_REJECTED"

MAX_EJECT_SECONDS = 60.0

POOL_REQUESTS = Counter(
    "docfactory_pool_requests_total",
    "Upstream HTTP attempts by pool and outcome (ok, error, connect_error, rejected, cancelled).",
    ["pool", "outcome"],
)
POOL_FAILFAST = Counter(
    "docfactory_pool_failfast_total",
    "Calls refused without an upstream attempt, by pool and reason.",
    ["pool", "reason"],
)
POOL_REPLICAS = Gauge(
    "docfactory_pool_replicas", "Replicas known to a pool, by state (up, down).", ["pool", "state"]
)
POOL_OUTSTANDING = Gauge(
    "docfactory_pool_outstanding", "Requests in flight to a pool's replicas.", ["pool"]
)


@dataclass(frozen=True)
class PoolSettings:
    max_concurrency_per_replica: int = 64
    health_interval_seconds: float = 5.0  # 0 disables active checks
    health_timeout_seconds: float = 2.0
    eject_after_errors: int = 3
    eject_seconds: float = 5.0
    dns_refresh_seconds: float = 15.0
    connect_timeout_seconds: float = 2.0
    request_timeout_seconds: float = 120.0  # used when the caller has no gRPC deadline
    max_attempts: int = 3
    retry_after_seconds: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> PoolSettings:
        """Take the fields of this class that a Generation/EmbeddingConfig carries."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if hasattr(cfg, name):
                values[name] = getattr(cfg, name)
        if hasattr(cfg, "timeout_seconds"):
            values["request_timeout_seconds"] = cfg.timeout_seconds
        return cls(**values)


@dataclass(eq=False)
class Replica:
    url: str  # base URL including /v1
    root: str  # scheme://host:port
    source: str  # the configured entry it came from
    outstanding: int = 0
    healthy: bool = True
    ejected_until: float = 0.0
    consecutive_errors: int = 0
    ejections: int = 0
    served: int = 0
    failures: int = 0
    health_path: str = ""  # "" until known: "/health" or "<base>/models"
    extra: dict[str, Any] = field(default_factory=dict)

    def up(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until


@dataclass(frozen=True)
class ReplicaStats:
    url: str
    up: bool
    outstanding: int
    served: int
    failures: int
    ejections: int


def _root_of(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _resolve(entry: str) -> list[str]:
    """``dns+http://name:port/path`` -> one base URL per address of ``name``."""
    parts = urlsplit(entry[len("dns+") :])
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addrs = sorted({str(info[4][0]) for info in infos})
    out = []
    for addr in addrs:
        netloc = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        out.append(urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")))
    return out


def _any_event(event: Mapping[str, Any]) -> bool:
    return True


class _Call:
    """The retry logic of one request, shared by the async and blocking paths (which differ only
    in their I/O call): up to ``max_attempts`` tries, each on a replica not tried yet, within one
    deadline; ``attempt()`` leases the next replica or raises the error that ends the call."""

    def __init__(self, pool: EndpointPool, budget_seconds: float | None) -> None:
        self.pool = pool
        self.deadline = pool._deadline(budget_seconds)
        self.tried: set[str] = set()
        self.last: BaseException | None = None
        self._left = max(1, pool.settings.max_attempts)

    def attempt(self) -> _Attempt:
        pool = self.pool
        if self._left <= 0:
            raise Unavailable(
                f"{pool.name}: no replica answered after {len(self.tried)} attempts: {self.last}",
                reason=NO_HEALTHY_REPLICA,
                retry_after_seconds=pool.settings.retry_after_seconds,
            ) from self.last
        self._left -= 1
        try:
            replica = pool._acquire(self.tried)
        except DocfactoryError as exc:
            if self.last is None:
                raise
            raise Unavailable(
                f"{pool.name}: no replica answered ({exc.message}); last error: {self.last}",
                reason=NO_HEALTHY_REPLICA,
                retry_after_seconds=exc.retry_after_seconds,
                metadata={"pool": pool.name},
            ) from self.last
        self.tried.add(replica.url)
        return _Attempt(self, replica)

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


class _Attempt:
    """One try on one leased replica, used as ``with call.attempt() as a:``. On exit it releases
    the slot, records the outcome exactly once, and decides: a connection failure, a 5xx, a
    broken body or an upstream error event is swallowed (the caller's loop tries another
    replica) unless the deadline has passed or output was already streamed (``started``);
    anything else (a rejection, cancellation, the caller closing a stream) propagates."""

    def __init__(self, call: _Call, replica: Replica) -> None:
        self.call = call
        self.replica = replica
        self.outcome = "error"
        self.started = False  # output reached the caller: a failure can no longer be retried
        self._status_error: DocfactoryError | None = None

    def url(self, path: str, root: bool = False) -> str:
        return (self.replica.root if root else self.replica.url) + path

    def timeout(self) -> httpx.Timeout:
        call = self.call
        left = call.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"{call.pool.name}: deadline exceeded", reason="DEADLINE_EXCEEDED"
            )
        return httpx.Timeout(left, connect=min(call.pool.settings.connect_timeout_seconds, left))

    def fail_status(self, status: int, text: str) -> NoReturn:
        """An HTTP error status: 400/404/405/413/422 are rejections (never retried), others are
        the replica's failure."""
        name, url = self.call.pool.name, self.replica.url
        if status in (400, 404, 405, 413, 422):
            self.outcome = "rejected"
            raise InvalidArgument(
                f"{name}: {url} rejected the request ({status}): {text}",
                reason=UPSTREAM_REJECTED,
                metadata={"status": str(status)},
            )
        self._status_error = Unavailable(
            f"{name}: {url} answered {status}: {text}",
            reason="UPSTREAM_ERROR",
            metadata={"status": str(status)},
        )
        raise self._status_error

    def json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            self.fail_status(response.status_code, response.text[:300])
        return response.json()

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        call = self.call
        try:
            if exc is None:
                self.outcome = "ok"
                return False
            if exc is self._status_error:
                call.last = exc
                return True
            if isinstance(exc, httpx.ConnectError):
                self.outcome, call.last = "connect_error", exc
                return True
            if isinstance(exc, httpx.HTTPError | ValueError | Unavailable):
                if call.expired():
                    raise DeadlineExceeded(f"{call.pool.name}: deadline exceeded") from exc
                if self.started:
                    raise Unavailable(
                        f"{call.pool.name}: {self.replica.url} failed mid-stream: {exc!r}",
                        reason=UPSTREAM_INTERRUPTED,
                    ) from exc
                call.last = exc
                return True
            # GeneratorExit / CancelledError / a deadline: the caller went away or ran out of
            # time, not the replica's fault; a rejection keeps its outcome.
            if self.outcome == "error":
                self.outcome = "cancelled"
            return False
        finally:
            call.pool._release(self.replica, self.outcome)


class EndpointPool:
    """Replicas of one OpenAI-compatible service (see the module docstring)."""

    def __init__(
        self,
        entries: Iterable[str],
        *,
        name: str,
        settings: PoolSettings | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or PoolSettings()
        self._entries = [e.strip().rstrip("/") for e in entries if e.strip()]
        if not self._entries:
            raise ValueError("an endpoint pool needs at least one URL")
        self._headers = dict(headers or {})
        self._lock = threading.Lock()
        self._replicas: list[Replica] = []
        self._rr = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._client: httpx.Client | None = None
        self._health_client = httpx.Client(
            timeout=httpx.Timeout(self.settings.health_timeout_seconds), headers=self._headers
        )
        self._last_dns = 0.0
        self._refresh_dns(initial=True)
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (health checks, DNS refresh). Idempotent."""
        with self._lock:
            if self._started:
                return
            self._started = True
        needs_thread = self.settings.health_interval_seconds > 0 or self._has_dns
        if needs_thread:
            self._thread = threading.Thread(target=self._run, name=f"pool-{self.name}", daemon=True)
            self._thread.start()

    @property
    def _has_dns(self) -> bool:
        return any(e.startswith("dns+") for e in self._entries)

    async def aclose(self) -> None:
        self.close_sync()
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def close_sync(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.health_timeout_seconds + 2)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._health_client.close()

    # ---- membership and health -------------------------------------------------------------

    def _refresh_dns(self, initial: bool = False) -> None:
        urls: list[tuple[str, str]] = []
        for entry in self._entries:
            if entry.startswith("dns+"):
                try:
                    urls.extend((u, entry) for u in _resolve(entry))
                except OSError as exc:
                    log.warning("pool %s: cannot resolve %s: %s", self.name, entry, exc)
                    with self._lock:  # keep the last known addresses of this entry
                        urls.extend((r.url, entry) for r in self._replicas if r.source == entry)
            else:
                urls.append((entry, entry))
        with self._lock:
            known = {r.url: r for r in self._replicas}
            replicas: list[Replica] = []
            seen: set[str] = set()
            for url, source in urls:
                if url not in seen:
                    seen.add(url)
                    replicas.append(
                        known.get(url) or Replica(url=url, root=_root_of(url), source=source)
                    )
            if not initial and {r.url for r in replicas} != set(known):
                log.info("pool %s: replicas now %s", self.name, [r.url for r in replicas])
            self._replicas = replicas
            self._last_dns = time.monotonic()
        self._publish()

    def _check(self, replica: Replica) -> bool:
        paths = [replica.health_path] if replica.health_path else ["/health", "/models"]
        for path in paths:
            target = replica.root + path if path == "/health" else replica.url + path
            try:
                r = self._health_client.get(target)
            except httpx.HTTPError:
                return False
            if r.status_code in (404, 405) and path == "/health" and len(paths) > 1:
                continue  # no /health (e.g. some OpenAI-compatible servers): try /models
            if r.status_code < 300:
                replica.health_path = path
                return True
            return False
        return False

    def check_now(self) -> None:
        """One round of active health checks, all replicas in parallel."""
        with self._lock:
            replicas = list(self._replicas)
        if not replicas:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(replicas))) as ex:
            results = list(ex.map(self._check, replicas))
        now = time.monotonic()
        with self._lock:
            for r, ok in zip(replicas, results, strict=True):
                if ok and not r.healthy and now >= r.ejected_until:
                    log.info("pool %s: %s re-admitted", self.name, r.url)
                    r.healthy = True
                    r.consecutive_errors = 0
                elif not ok and r.healthy:
                    log.warning("pool %s: %s failed its health check", self.name, r.url)
                    r.healthy = False
        self._publish()

    def _run(self) -> None:
        next_health = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self._has_dns and now - self._last_dns >= self.settings.dns_refresh_seconds:
                self._refresh_dns()
            if self.settings.health_interval_seconds > 0 and now >= next_health:
                try:
                    self.check_now()
                except Exception:  # pragma: no cover - never let the checker die
                    log.exception("pool %s: health check round failed", self.name)
                next_health = time.monotonic() + self.settings.health_interval_seconds
            self._stop.wait(0.1 if self.settings.health_interval_seconds < 1 else 0.25)

    def _publish(self) -> None:
        now = time.monotonic()
        with self._lock:
            up = sum(1 for r in self._replicas if r.up(now))
            total = len(self._replicas)
            outstanding = sum(r.outstanding for r in self._replicas)
        POOL_REPLICAS.labels(self.name, "up").set(up)
        POOL_REPLICAS.labels(self.name, "down").set(total - up)
        POOL_OUTSTANDING.labels(self.name).set(outstanding)

    def stats(self) -> list[ReplicaStats]:
        now = time.monotonic()
        with self._lock:
            return [
                ReplicaStats(r.url, r.up(now), r.outstanding, r.served, r.failures, r.ejections)
                for r in self._replicas
            ]

    def replicas(self) -> list[Replica]:
        with self._lock:
            return list(self._replicas)

    # ---- leasing ---------------------------------------------------------------------------

    def _acquire(self, exclude: set[str]) -> Replica:
        self.start()
        s = self.settings
        with self._lock:
            now = time.monotonic()
            candidates = [r for r in self._replicas if r.url not in exclude]
            up = [r for r in candidates if r.up(now)]
            free = [r for r in up if r.outstanding < s.max_concurrency_per_replica]
            if free:
                least = min(r.outstanding for r in free)
                best = [r for r in free if r.outstanding == least]
                chosen = best[self._rr % len(best)]
                self._rr += 1
                chosen.outstanding += 1
                return chosen
            if up:
                reason, retry_after = POOL_SATURATED, s.retry_after_seconds
            else:
                waits = [r.ejected_until - now for r in candidates if r.ejected_until > now]
                retry_after = max(
                    s.retry_after_seconds,
                    min(waits) if waits else s.health_interval_seconds or s.retry_after_seconds,
                )
                reason = NO_HEALTHY_REPLICA
            total = len(self._replicas)
        POOL_FAILFAST.labels(self.name, reason).inc()
        if reason == POOL_SATURATED:
            raise ResourceExhausted(
                f"{self.name}: all {len(up)} available replicas are at their limit of "
                f"{s.max_concurrency_per_replica} concurrent requests",
                reason=POOL_SATURATED,
                retry_after_seconds=retry_after,
                metadata={"pool": self.name},
            )
        raise Unavailable(
            f"{self.name}: no healthy replica ({total} known"
            + (f", {len(exclude)} already tried" if exclude else "")
            + ")",
            reason=NO_HEALTHY_REPLICA,
            retry_after_seconds=round(retry_after, 3),
            metadata={"pool": self.name},
        )

    def _release(self, replica: Replica, outcome: str) -> None:
        """outcome: ok | error | connect_error | rejected | cancelled."""
        s = self.settings
        with self._lock:
            replica.outstanding -= 1
            if outcome == "ok":
                replica.served += 1
                replica.consecutive_errors = 0
            elif outcome in ("error", "connect_error"):
                replica.failures += 1
                replica.consecutive_errors += 1
                if outcome == "connect_error" or replica.consecutive_errors >= s.eject_after_errors:
                    self._eject(replica)
        POOL_REQUESTS.labels(self.name, outcome).inc()
        self._publish()

    def _eject(self, replica: Replica) -> None:
        now = time.monotonic()
        if not replica.up(now):
            return
        replica.ejections += 1
        seconds = min(
            MAX_EJECT_SECONDS, self.settings.eject_seconds * 2 ** min(replica.ejections - 1, 6)
        )
        replica.ejected_until = now + seconds
        # With active checks a replica comes back only through a successful check.
        if self.settings.health_interval_seconds > 0:
            replica.healthy = False
        log.warning("pool %s: %s ejected for %.1fs", self.name, replica.url, seconds)

    # ---- timeouts --------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        seconds = (
            timeout
            if timeout is not None
            else remaining_seconds(self.settings.request_timeout_seconds)
        )
        return time.monotonic() + float(seconds or self.settings.request_timeout_seconds)

    def _client_async(self) -> httpx.AsyncClient:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(
                headers=self._headers,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return self._aclient

    def _client_sync(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers=self._headers,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                )
            return self._client

    # ---- requests (the retry logic is _Call's; these hold only the I/O) ----------------

    async def request_json(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        root: bool = False,
        budget_seconds: float | None = None,
    ) -> Any:
        """One JSON request, retried on another replica on failure (nothing is streamed)."""
        call = _Call(self, budget_seconds)
        while True:
            with call.attempt() as a:
                r = await self._client_async().request(
                    method, a.url(path, root), json=body, timeout=a.timeout()
                )
                return a.json(r)

    def request_json_sync(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        root: bool = False,
        budget_seconds: float | None = None,
    ) -> Any:
        """Blocking ``request_json`` (for worker threads, e.g. embedding batches)."""
        call = _Call(self, budget_seconds)
        while True:
            with call.attempt() as a:
                r = self._client_sync().request(
                    method, a.url(path, root), json=body, timeout=a.timeout()
                )
                return a.json(r)

    async def stream_sse(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        is_output: Callable[[Mapping[str, Any]], bool] = _any_event,
        is_final: Callable[[Mapping[str, Any]], bool] | None = None,
        budget_seconds: float | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """POST and yield the server-sent JSON events until ``[DONE]``.

        A failure is retried on another replica only while no event for which ``is_output`` is
        true has been yielded. With ``is_final``, a body that ends before ``[DONE]`` or a final
        event counts as cut (close-delimited bodies hide a dead peer). Closing the iterator (or
        cancelling its task) closes the HTTP connection, which makes the server abort the
        generation.
        """
        call = _Call(self, budget_seconds)
        while True:
            with call.attempt() as a:
                async with self._client_async().stream(
                    "POST", a.url(path), json=body, timeout=a.timeout()
                ) as r:
                    if r.status_code >= 400:
                        a.fail_status(
                            r.status_code, (await r.aread()).decode(errors="replace")[:300]
                        )
                    # The body ends with "data: [DONE]" (vLLM) or just ends after a final event
                    # (some servers); a cut chunked body raises httpx.RemoteProtocolError.
                    complete = is_final is None
                    async for line in r.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            complete = True
                            break
                        event = json.loads(data)
                        if (
                            isinstance(event, dict)
                            and event.get("error")
                            and not event.get("choices")
                        ):
                            raise Unavailable(
                                f"{self.name}: {a.replica.url} failed: {event['error']}",
                                reason="UPSTREAM_ERROR",
                            )
                        if call.expired():
                            raise DeadlineExceeded(f"{self.name}: deadline exceeded")
                        if not a.started and is_output(event):
                            a.started = True
                        yield event
                        if is_final is not None and is_final(event):
                            complete = True
                    if not complete:
                        raise httpx.RemoteProtocolError("the stream ended before its final event")
                return
