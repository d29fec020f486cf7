"""Sign-in, server-side sessions, CSRF tokens and the role each page or action needs.

A session lives in the console process only (its id in an HttpOnly, SameSite=Strict cookie,
Secure over TLS); it holds the person's API key so that every gRPC call is made as that person.
Sessions expire (``ttl``) and end at sign-out; a sign-in always creates a new session id and
ends the one the browser held. Several console replicas need sticky sessions.

Before a session exists, the sign-in form is protected by :class:`SignInTokens` (a pre-session
cookie and a form token, both issued and signed by this process: a cookie the client planted is
never adopted) and by an Origin/Referer check (:func:`foreign_origin`). Failed sign-ins are
throttled per client address and per key fingerprint (:class:`SignInThrottle`) and recorded
(:class:`SignInAudit`), never with the key itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from docfactory.console.backend import Caller

log = logging.getLogger("docfactory.console.audit")

COOKIE = "docfactory_console"
PRE_COOKIE = "docfactory_console_signin"  # pre-session of the sign-in form (SignInTokens)

#: Every role the console knows, as in the policy (``KNOWN_ROLES``).
ROLES = frozenset({"reviewer", "ingester", "operator", "owner", "admin", "auditor"})

#: Every signed-in person: the API decides (tenant, use case, ingester role), not the console.
EVERYONE: frozenset[str] = frozenset()

#: Who may open each page or take each action (checked on the server for every request);
#: EVERYONE (no role listed): any signed-in person, e.g. an analyst without a role who creates
#: a dossier and follows its runs.
PERMISSIONS: dict[str, frozenset[str]] = {
    "inbox": frozenset({"reviewer"}),
    "dossiers": EVERYONE,
    "dossiers.create": EVERYONE,
    "ask": EVERYONE,
    "dossiers.decide": frozenset({"reviewer"}),
    "dossiers.run": frozenset({"operator", "owner", "admin"}),
    "documents": frozenset({"reviewer", "ingester", "operator", "owner", "admin"}),
    "documents.delete": frozenset({"ingester", "admin"}),
    "jobs": frozenset({"ingester", "operator", "admin"}),
    "usage": frozenset({"owner", "operator", "admin"}),
    "audit": frozenset({"auditor", "admin"}),
}


@dataclass
class Session:
    session_id: str
    api_key: str
    caller: Caller
    csrf_token: str
    expires_at: float
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def roles(self) -> frozenset[str]:
        """Without a policy the APIs check no role: every page is open, as on the API."""
        if not self.caller.policy_configured:
            return ROLES
        return self.caller.roles

    def may(self, permission: str) -> bool:
        needed = PERMISSIONS[permission]
        return not needed or bool(self.roles & needed)

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token, str(token))

    def flash(self, kind: str, message: str) -> None:
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


class SessionStore:
    """In-memory sessions with expiry (thread-safe; swept on access)."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, api_key: str, caller: Caller) -> Session:
        session = Session(
            session_id=secrets.token_urlsafe(32),
            api_key=api_key,
            caller=caller,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=self._clock() + self.ttl,
        )
        with self._lock:
            self._sweep()
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires_at <= self._clock():
                del self._sessions[session_id]
                return None
            return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._sweep()
            return len(self._sessions)

    def _sweep(self) -> None:
        now = self._clock()
        for sid in [s for s, v in self._sessions.items() if v.expires_at <= now]:
            del self._sessions[sid]


# -- the sign-in form: server-issued CSRF tokens, same-origin check ---------------------------


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path of this console only (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class SignInTokens:
    """CSRF tokens of the sign-in form, issued by this process only.

    ``GET /signin`` gives a pre-session (cookie ``PRE_COOKIE``: a random nonce, its issue time and
    an HMAC of both under a secret of this process) and a form token (another HMAC of that
    cookie). ``POST /signin`` is accepted only when the cookie's HMAC holds, it is younger than
    ``ttl_seconds`` and the token is the one derived from it: a value the client planted (the
    old double-submit accepted any cookie equal to the posted field) is neither adopted by the
    form nor accepted. Stateless; the secret is per process, so a restart asks the person to
    reload the page, and several console replicas would need a shared secret (they already need
    sticky sessions).
    """

    def __init__(
        self,
        ttl_seconds: float = 3600,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl_seconds
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock

    def _mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}|{value}".encode(), hashlib.sha256).digest()
        return _b64(digest[:24])

    def pre_session(self, cookie: str | None) -> str:
        """The browser's pre-session when this process issued it and it is still valid (several
        tabs keep working), else a new one."""
        if cookie and self.valid(cookie):
            return cookie
        body = f"{secrets.token_urlsafe(24)}.{int(self._clock())}"
        return f"{body}.{self._mac('pre-session', body)}"

    def valid(self, cookie: str) -> bool:
        parts = cookie.split(".")
        if len(parts) != 3:
            return False
        nonce, issued, mac = parts
        if not hmac.compare_digest(mac, self._mac("pre-session", f"{nonce}.{issued}")):
            return False
        try:
            age = self._clock() - int(issued)
        except ValueError:
            return False
        return -60 <= age <= self.ttl

    def token(self, pre_session: str) -> str:
        """The form token of a pre-session (hidden field of the sign-in form)."""
        return self._mac("form", pre_session)

    def check(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or not self.valid(cookie):
            return False
        return hmac.compare_digest(self.token(cookie), str(token))


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    return scheme, host, port or (443 if scheme == "https" else 80)


def foreign_origin(
    own: str, origin: str | None, referer: str | None, allowed: Sequence[str] = ()
) -> str | None:
    """The origin a sign-in POST came from when it is not the console's own (``own``: scheme
    and host the request reached, or one of ``allowed``, the public origins behind a reverse
    proxy that rewrites Host), else None. ``Origin`` first, else ``Referer``; a request with
    neither (not sent by a browser page) passes, the form token still applies. ``Origin: null``
    (sandboxed frame, data: URL) is foreign. An ``https`` page of the same host posting to a
    request that arrived as ``http`` passes (TLS ended by a proxy whose X-Forwarded-Proto
    uvicorn does not trust); the other way round (an ``http`` page) does not."""
    claimed = (origin or "").strip() or (referer or "").strip()
    if not claimed:
        return None
    seen = _origin(claimed)
    if seen is not None:
        for mine in (_origin(u) for u in (own, *allowed)):
            if mine is None:
                continue
            upgraded = (seen[0], mine[0]) == ("https", "http") and seen[1] == mine[1]
            if seen == mine or upgraded:
                return None
    return claimed[:200]


# -- failed sign-ins: throttle, lockout, audit ---------------------------------------------


@dataclass(frozen=True)
class SignInLimits:
    """``max_failures`` failed sign-ins within ``window_seconds`` (per client address, and per
    key fingerprint) lock that address or key for ``lockout_seconds``."""

    max_failures: int = 5
    window_seconds: float = 300.0
    lockout_seconds: float = 900.0
    max_entries: int = 100_000


@dataclass
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    in_flight: int = 0


class SignInThrottle:
    """Failed sign-ins counted per client address and per key fingerprint (an HMAC of the key
    under a secret of this process: the key is never kept), in this process's memory.

    While an address or a key is locked, every sign-in from that address or with that key is
    refused before it reaches a service, even with the right key. Attempts still in flight
    count as failures until they end, so concurrent requests cannot slip more than
    ``max_failures`` guesses in before the lock. A successful sign-in clears
    its key's failures but not its address's (a person holding one valid key cannot reset the
    counter between guesses). Several console replicas each count on their own: a shared store
    (the metadata database, Redis) would be needed for a global limit; behind a reverse proxy,
    uvicorn must trust its X-Forwarded-For (``FORWARDED_ALLOW_IPS``) or every person shares the
    proxy's address. At most ``max_entries`` counters are kept (expired ones swept first).
    """

    def __init__(
        self,
        limits: SignInLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        secret: bytes | None = None,
    ) -> None:
        self.limits = limits or SignInLimits()
        self._clock = clock
        self._secret = secret or secrets.token_bytes(32)
        self._counters: dict[str, _Counter] = {}
        self._lock = threading.Lock()

    def fingerprint(self, key: str) -> str:
        """16 hex characters identifying a key within this process, not the key."""
        digest = hmac.new(self._secret, key.encode("utf-8", "replace"), hashlib.sha256)
        return digest.hexdigest()[:16]

    @staticmethod
    def _subjects(client: str, fingerprint: str) -> tuple[tuple[str, str], ...]:
        return (("client", f"client:{client}"), ("key", f"key:{fingerprint}"))

    def _prune(self, counter: _Counter, now: float) -> None:
        while counter.failures and counter.failures[0] <= now - self.limits.window_seconds:
            counter.failures.popleft()

    def begin(self, client: str, fingerprint: str) -> float:
        """Before trying a key: 0 and the attempt counted in flight (call :meth:`end` after
        it), or the seconds to wait (locked; or as many attempts in flight as failures left)."""
        now = self._clock()
        with self._lock:
            counters = [
                self._counters.setdefault(name, _Counter())
                for _, name in self._subjects(client, fingerprint)
            ]
            wait = max(c.locked_until - now for c in counters)
            if wait > 0:
                return wait
            for counter in counters:
                self._prune(counter, now)
                if len(counter.failures) + counter.in_flight >= self.limits.max_failures:
                    return 1.0
            for counter in counters:
                counter.in_flight += 1
            if len(self._counters) > self.limits.max_entries:
                self._sweep(now)
        return 0.0

    def end(self, client: str, fingerprint: str) -> None:
        """The attempt counted by :meth:`begin` is over (after :meth:`failed` or
        :meth:`succeeded`, or an error of the services)."""
        with self._lock:
            for _, name in self._subjects(client, fingerprint):
                counter = self._counters.get(name)
                if counter is not None and counter.in_flight > 0:
                    counter.in_flight -= 1

    def failed(self, client: str, fingerprint: str) -> list[str]:
        """Count one failure; the subjects (``client``, ``key``) it locked just now."""
        now = self._clock()
        limits = self.limits
        locked: list[str] = []
        with self._lock:
            for kind, name in self._subjects(client, fingerprint):
                counter = self._counters.setdefault(name, _Counter())
                self._prune(counter, now)
                counter.failures.append(now)
                if len(counter.failures) >= limits.max_failures and counter.locked_until <= now:
                    counter.locked_until = now + limits.lockout_seconds
                    counter.failures.clear()
                    locked.append(kind)
        return locked

    def succeeded(self, fingerprint: str) -> None:
        """A sign-in with this key worked: its failures are forgotten (not its address's)."""
        with self._lock:
            counter = self._counters.get(f"key:{fingerprint}")
            if counter is not None:
                counter.failures.clear()

    def _sweep(self, now: float) -> None:
        window = self.limits.window_seconds
        for name in [
            n
            for n, c in self._counters.items()
            if c.locked_until <= now
            and not c.in_flight
            and (not c.failures or c.failures[-1] <= now - window)
        ]:
            del self._counters[name]
        excess = len(self._counters) - self.limits.max_entries
        if excess > 0:  # a flood from very many addresses: forget the oldest unlocked first
            order = sorted(self._counters, key=lambda n: self._counters[n].locked_until > now)
            for name in order[:excess]:
                del self._counters[name]


#: Tenant of the audit records of sign-ins that never authenticated (no tenant is known).
SIGNIN_AUDIT_TENANT = "-"

#: (action, outcome, details) -> appended to the audit chain under SIGNIN_AUDIT_TENANT.
AuditSink = Callable[[str, str, dict[str, Any]], None]


class SignInAudit:
    """Failed sign-ins and lockouts: always a warning on logger ``docfactory.console.audit``;
    also a record of the audit hash chain (tenant ``-``, actions ``CONSOLE_SIGNIN_FAILED`` and
    ``CONSOLE_SIGNIN_LOCKED``) through ``sink``, which the composition root gives the console
    when it may write the chain (``docfactory console`` on the embedded default and
    ``serve --console-port``, in the server's process; ``DOCFACTORY_CONSOLE_AUDIT_DATABASE_URL``
    otherwise). The console itself reaches no database: it only calls the sink.

    The servers do not audit a call refused as UNAUTHENTICATED (no principal), and a lockout
    is the console's own decision that reaches no service: without a sink these events are
    only in the console's log. Records carry the client address and the key fingerprint,
    never the key.
    """

    def __init__(self, sink: AuditSink | None = None) -> None:
        self.sink = sink

    async def record(self, action: str, outcome: str, details: Mapping[str, Any]) -> None:
        log.warning(
            "console %s %s %s",
            action,
            outcome,
            " ".join(f"{k}={v}" for k, v in details.items()),
        )
        if self.sink is None:
            return
        sink = self.sink
        try:
            await asyncio.to_thread(sink, action, outcome, dict(details))
        except Exception:
            log.exception("console: audit of %s failed", action)
