"""API keys -> tenants. Keys are stored hashed (SHA-256) in a YAML keys file:

```yaml
keys:
  - id: app-credit            # key id, recorded in audit and metrics (never the key itself)
    tenant: caisse-nord       # the subsidiary
    sha256: 5e88...           # hex SHA-256 of the key
    expires: 2027-06-30       # optional (date or ISO datetime, UTC)
```
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from docfactory.core.errors import ConfigError, PermissionDenied, Unauthenticated

API_KEY_HEADER = "x-api-key"
# A key with the ``worker`` role (bulk ingestion workers) acts for the tenant of the job it
# processes by naming it in this header; any other key may only name its own tenant.
ON_BEHALF_HEADER = "x-docfactory-on-behalf-of"
WORKER_ROLE = "worker"


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    tenant: str
    key_id: str
    api_key: str  # kept in memory only to forward to downstream services
    roles: frozenset[str] = frozenset()
    on_behalf_of: str = ""  # set when a worker key acts for ``tenant`` (forwarded downstream)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Credentials to forward on downstream calls made for this caller."""
        md: tuple[tuple[str, str], ...] = ((API_KEY_HEADER, self.api_key),)
        if self.on_behalf_of:
            md += ((ON_BEHALF_HEADER, self.on_behalf_of),)
        return md


class KeyRefused(Unauthenticated):
    """A key that was recognised but refused (expired, presented without its client
    certificate). ``principal`` names the key's tenant and id, so the refusal can be audited
    under that key; it never leaves the server (the client gets the plain UNAUTHENTICATED)."""

    def __init__(self, refused: Unauthenticated, principal: Principal) -> None:
        super().__init__(refused.message, reason=refused.reason, metadata=refused.metadata)
        self.principal = principal


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    tenant: str
    sha256: str
    expires: dt.datetime | None
    roles: frozenset[str] = frozenset()


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "docfactory_principal", default=None
)
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "docfactory_deadline", default=None
)
# The outcomes already written to the audit chain during the current RPC (a set shared with the
# threads and tasks the RPC starts): the interceptor does not write a refusal a second time.
_audited: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "docfactory_audited_outcomes", default=None
)


def current_principal() -> Principal:
    p = _current.get()
    if p is None:
        raise Unauthenticated("no authenticated caller in this context", reason="NO_CALLER")
    return p


def principal_or_none() -> Principal | None:
    return _current.get()


def set_principal(p: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(p)


def begin_audit_scope() -> None:
    """Start the current RPC's record of audited outcomes (called by the interceptor)."""
    _audited.set(set())


def note_audited(outcome: str) -> None:
    """An audit record with ``outcome`` was written for the current RPC."""
    seen = _audited.get()
    if seen is not None:
        seen.add(outcome)


def audited_in_scope(outcome: str) -> bool:
    """Whether a record with ``outcome`` was written during the current RPC."""
    seen = _audited.get()
    return seen is not None and outcome in seen


def set_deadline(monotonic_deadline: float | None) -> None:
    _deadline.set(monotonic_deadline)


def remaining_seconds(default: float | None = None) -> float | None:
    """Seconds left before the current RPC's deadline (for downstream calls)."""
    d = _deadline.get()
    if d is None:
        return default
    return max(0.001, d - time.monotonic())


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_expiry(value: object, where: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid expires {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_keys(raw: object, source: str) -> list[KeyEntry]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("keys"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'keys' list")
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(raw["keys"]):
        where = f"{source}: keys[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: must be a mapping")
        missing = [k for k in ("id", "tenant", "sha256") if not item.get(k)]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        digest = str(item["sha256"]).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}: sha256 must be 64 hex characters")
        if str(item["id"]) in seen:
            raise ConfigError(f"{where}: duplicate key id {item['id']!r}")
        seen.add(str(item["id"]))
        entries.append(
            KeyEntry(
                key_id=str(item["id"]),
                tenant=str(item["tenant"]),
                sha256=digest,
                expires=_parse_expiry(item.get("expires"), where),
                roles=_parse_roles(item.get("roles"), where),
            )
        )
    return entries


def _parse_roles(value: object, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise ConfigError(f"{where}: roles must be a list of strings")
    return frozenset(value)


def act_on_behalf(
    principal: Principal, tenant: str, known_tenant: Callable[[str], bool] | None = None
) -> Principal:
    """The principal for a call naming ``tenant`` in :data:`ON_BEHALF_HEADER`.

    Only a key with the ``worker`` role may name another tenant, and only a tenant that
    ``known_tenant`` accepts (the policy's tenants; without a policy, the keys file's)."""
    tenant = tenant.strip()
    if not tenant or tenant == principal.tenant:
        return principal
    shown = tenant[:64]
    if WORKER_ROLE not in principal.roles:
        raise PermissionDenied(
            f"key {principal.key_id!r} may not act for tenant {shown!r}: "
            f"only keys with the '{WORKER_ROLE}' role may set {ON_BEHALF_HEADER}",
            reason="ON_BEHALF_NOT_ALLOWED",
            metadata={"key_id": principal.key_id, "tenant": shown},
        )
    if known_tenant is not None and not known_tenant(tenant):
        raise PermissionDenied(
            f"key {principal.key_id!r} may not act for tenant {shown!r}: "
            "it is not a tenant of this deployment",
            reason="UNKNOWN_TENANT",
            metadata={"key_id": principal.key_id, "tenant": shown},
        )
    return Principal(
        tenant=tenant,
        key_id=principal.key_id,
        api_key=principal.api_key,
        roles=frozenset(),  # a worker acting for a tenant gets none of its own roles there
        on_behalf_of=tenant,
    )


def on_behalf_from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    for k, v in metadata or ():
        if k == ON_BEHALF_HEADER:
            return (v.decode() if isinstance(v, bytes) else v).strip()
    return ""


class Authenticator(Protocol):
    def authenticate(self, api_key: str | None, *, mtls_subject: str | None = None) -> Principal:
        """``mtls_subject``: the verified client certificate's subject (mTLS), if any.
        A recognised key that is refused raises :class:`KeyRefused`."""
        ...

    def knows_tenant(self, tenant: str) -> bool:
        """Whether ``tenant`` exists (a worker key may act only for these)."""
        ...


class KeyStore:
    """Resolves API keys to principals; reloads the file when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._by_hash: dict[str, KeyEntry] = {}
        self._reload(force=True)

    @property
    def path(self) -> Path:
        return self._path

    def _reload(self, force: bool = False) -> None:
        try:
            mtime = self._path.stat().st_mtime
        except OSError as exc:
            if force:
                raise ConfigError(f"keys file {self._path} is not readable: {exc}") from exc
            return
        if not force and mtime == self._mtime:
            return
        try:
            raw = yaml.safe_load(self._path.read_text(encoding="utf-8"))
            entries = parse_keys(raw, str(self._path))
        except (OSError, yaml.YAMLError) as exc:
            if force:
                raise ConfigError(f"keys file {self._path}: {exc}") from exc
            return  # keep serving with the last good file
        except ConfigError:
            if force:
                raise
            return
        with self._lock:
            self._by_hash = {e.sha256: e for e in entries}
            self._mtime = mtime

    def authenticate(self, api_key: str | None, *, mtls_subject: str | None = None) -> Principal:
        if not api_key:
            raise Unauthenticated(
                f"missing API key: send it in the '{API_KEY_HEADER}' metadata "
                "or as 'authorization: Bearer <key>'",
                reason="API_KEY_MISSING",
            )
        self._reload()
        digest = hash_key(api_key)
        with self._lock:
            entry = self._by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            raise Unauthenticated("unknown API key", reason="API_KEY_INVALID")
        if entry.expires is not None and entry.expires <= dt.datetime.now(dt.UTC):
            raise KeyRefused(
                Unauthenticated(
                    f"API key {entry.key_id!r} expired on {entry.expires.isoformat()}",
                    reason="API_KEY_EXPIRED",
                    metadata={"key_id": entry.key_id},
                ),
                Principal(tenant=entry.tenant, key_id=entry.key_id, api_key="", roles=entry.roles),
            )
        return Principal(
            tenant=entry.tenant, key_id=entry.key_id, api_key=api_key, roles=entry.roles
        )

    def knows_tenant(self, tenant: str) -> bool:
        """The keys file's tenants (the embedded default has no policy)."""
        self._reload()
        with self._lock:
            return any(e.tenant == tenant for e in self._by_hash.values())


def key_from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for k, v in metadata or ():
        value = v.decode() if isinstance(v, bytes) else v
        if k == API_KEY_HEADER:
            return value.strip()
        if k == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


def ensure_local_keys(keys_file: Path, key_file: Path, tenant: str = "default") -> str:
    """Embedded default: create a keys file with one local key on first use.

    The plaintext key goes to ``key_file`` (mode 0600) so the local CLI can use it; only its
    hash is in the keys file. Returns the local key (existing or new).
    """
    if key_file.exists() and keys_file.exists():
        return key_file.read_text(encoding="utf-8").strip()
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    key = "df_" + secrets.token_urlsafe(24)
    entries = []
    if keys_file.exists():
        raw = yaml.safe_load(keys_file.read_text(encoding="utf-8")) or {"keys": []}
        entries = list(raw.get("keys", []))
    entries = [e for e in entries if e.get("id") != "local"]
    entries.append({"id": "local", "tenant": tenant, "sha256": hash_key(key)})
    keys_file.write_text(yaml.safe_dump({"keys": entries}, sort_keys=False), encoding="utf-8")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key
