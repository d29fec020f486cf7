"""Sign-in, server-side sessions, CSRF tokens and the role each page or action needs.

A session lives in the console process only (its id in an HttpOnly, SameSite=Strict cookie,
Secure over TLS); it holds the person's API key so that every gRPC call is made as that person.
Sessions expire (``ttl``) and end at sign-out. Several console replicas need sticky sessions.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from docfactory.console.backend import Caller

COOKIE = "docfactory_console"
PRE_COOKIE = "docfactory_console_signin"  # CSRF token of the sign-in form (double submit)

#: Every role the console knows, as in the policy (``KNOWN_ROLES``).
ROLES = frozenset({"reviewer", "ingester", "operator", "owner", "admin", "auditor"})

#: Who may open each page or take each action (checked on the server for every request).
PERMISSIONS: dict[str, frozenset[str]] = {
    "inbox": frozenset({"reviewer"}),
    "dossiers": frozenset({"reviewer", "owner", "operator", "admin"}),
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
        return bool(self.roles & PERMISSIONS[permission])

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
