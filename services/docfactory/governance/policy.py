"""The governance policy: a versioned YAML file, reviewed like code, validated at load.

```yaml
version: 7                          # required; recorded in audit records
default_classification: INTERNAL    # objects matched by no rule below (default INTERNAL)
ingestion_requires_role: true       # optional (default false): writes need the ingester role
tenants:
  - id: caisse-nord
    name: Caisse régionale Nord
    sources:                        # what its bulk jobs (IngestPrefix) may read; none = nothing
      - {bucket: rh, prefix: caisse-nord/}
api_keys:                           # several active keys per app = rotation
  - id: app-credit-2025             # key id (audit, metrics) -- never the key itself
    app: app-credit                 # optional; groups the keys of one application
    tenant: caisse-nord
    sha256: 5e88...                 # hex SHA-256 of the key (docfactory.core.auth.hash_key)
    expires: 2026-06-30             # optional (date or ISO datetime, UTC)
    mtls_subject: "CN=app-credit,O=Caisse Nord"   # optional: the client certificate must match
    roles: [reviewer]               # optional: reviewer, admin, auditor, ingester, worker
use_cases:
  - id: credit-faq
    tenants: [caisse-nord]          # or `tenant: caisse-nord`
    owner: direction-credit@caisse-nord.fr
    purpose: Questions des conseillers sur les procédures de crédit
    allowed_collections: [credit, rh]   # or "*"
    max_classification: CONFIDENTIAL
    allowed_models: [mistral-small-3.2]  # or "*"
    allowed_keys: "*"               # optional (default "*": every key of an allowed tenant)
    human_review: required          # required | optional
    retention: 30d                  # question text kept: none | <n>h | <n>d | <n>w | <n>y
    flows: [financement]            # optional: dossier workflows it may run ("*" = all)
    quotas: {requests_per_minute: 60, requests_per_day: 5000, tokens_per_day: 2000000}
    pii: mask_in_answers            # optional: allow (default) | mask_in_answers | redact_at_ingest
object_classifications:             # MinIO bucket/prefix defaults, longest prefix wins
  - {bucket: rh, prefix: "", classification: INTERNAL}
  - {bucket: rh, prefix: dossiers-salaries/, classification: RESTRICTED}
```

Every problem is reported with the path of the offending field, e.g.
``use_cases[2].max_classification: unknown level 'SECRET'``; all problems of a file are
collected in one :class:`PolicyError`. Unknown fields are errors (a typo must not silently
disable a control).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from docfactory.core.auth import hash_key
from docfactory.core.errors import ConfigError, InvalidArgument, PermissionDenied, Unauthenticated
from docfactory.core.tls import subjects_equal

log = logging.getLogger(__name__)

#: Classification levels and their ranks (higher = more sensitive).
LEVELS: dict[str, int] = {"PUBLIC": 1, "INTERNAL": 2, "CONFIDENTIAL": 3, "RESTRICTED": 4}
LEVEL_NAMES: dict[int, str] = {rank: name for name, rank in LEVELS.items()}
KNOWN_ROLES = frozenset({"reviewer", "admin", "auditor", "ingester", "worker", "operator", "owner"})
ANY = "*"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_RETENTION_RE = re.compile(r"^(\d+)([hdwy])$")
_RETENTION_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_QUOTA_FIELDS = ("requests_per_minute", "requests_per_day", "tokens_per_day")
#: Personal data per use case (docfactory.pii), least to most strict.
PII_MODES = ("allow", "mask_in_answers", "redact_at_ingest")


class PolicyError(ConfigError):
    """The policy file is invalid. ``problems`` lists every ``path: problem`` found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            "; ".join(self.problems),
            reason="INVALID_POLICY",
            metadata={"file": source, "field": self.problems[0].split(":", 1)[0]},
        )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """How long the question text may be kept. ``duration`` None means: not kept at all."""

    spec: str
    duration: dt.timedelta | None

    @property
    def keeps_question(self) -> bool:
        return self.duration is not None


@dataclass(frozen=True)
class QuotaLimits:
    """None = unlimited."""

    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_day: int | None = None

    @property
    def unlimited(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.requests_per_day is None
            and self.tokens_per_day is None
        )


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    quotas: QuotaLimits = field(default_factory=QuotaLimits)
    # Object-store sources this tenant's bulk jobs may read: (bucket, key prefix) pairs.
    sources: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    sha256: str
    app: str = ""
    expires: dt.datetime | None = None
    mtls_subject: str | None = None
    roles: frozenset[str] = frozenset()

    def active(self, now: dt.datetime) -> bool:
        return self.expires is None or self.expires > now


@dataclass(frozen=True)
class UseCase:
    id: str
    tenants: frozenset[str]
    owner: str
    purpose: str
    allowed_collections: frozenset[str] | None  # None = "*"
    max_classification: int
    allowed_models: frozenset[str] | None  # None = "*"
    allowed_keys: frozenset[str] | None  # None = "*"
    human_review: bool
    retention: Retention
    quotas: QuotaLimits
    # Dossier workflows (docfactory.workflows) this use case may run; None = "*".
    flows: frozenset[str] | None = frozenset()
    pii: str = "allow"  # one of PII_MODES


@dataclass(frozen=True)
class ObjectRule:
    bucket: str
    prefix: str
    classification: int


@dataclass(frozen=True)
class Decision:
    """What a caller may do for one request, resolved from the policy."""

    tenant: str
    key_id: str
    use_case: str
    max_classification: int  # rank: the retrieval filter must keep classification <= this
    collections: tuple[str, ...] | None  # None: every collection of the tenant
    model: str  # "" when no generative model is involved
    human_review: bool
    retention: Retention
    quotas: QuotaLimits  # of the use case
    tenant_quotas: QuotaLimits
    policy_version: str
    pii: str = "allow"  # the use case's personal-data mode (PII_MODES)


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def err(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def mapping(self, value: object, path: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.err(path, f"must be a mapping, got {_kind(value)}")
            return None
        return value

    def fields(
        self, m: Mapping[str, Any], path: str, required: Iterable[str], optional: Iterable[str]
    ) -> None:
        req = list(required)
        allowed = set(req) | set(optional)
        for name in req:
            if m.get(name) is None or m.get(name) == "":
                self.err(_join(path, name), "required")
        for name in m:
            if name not in allowed:
                self.err(_join(path, str(name)), "unknown field")

    def string(self, m: Mapping[str, Any], name: str, path: str, *, ident: bool = False) -> str:
        value = m.get(name)
        if value is None:
            return ""
        where = _join(path, name)
        if not isinstance(value, str):
            self.err(where, f"must be a string, got {_kind(value)}")
            return ""
        if ident and not _ID_RE.match(value):
            self.err(where, f"invalid identifier {value!r} (letters, digits, . _ : -)")
        return value

    def level(self, m: Mapping[str, Any], name: str, path: str, default: int | None) -> int:
        value = m.get(name)
        where = _join(path, name)
        if value is None:
            if default is None:
                return 0  # already reported as required
            return default
        if not isinstance(value, str) or value not in LEVELS:
            self.err(where, f"unknown level {value!r} (expected one of {', '.join(LEVELS)})")
            return 0
        return LEVELS[value]

    def str_set(
        self, m: Mapping[str, Any], name: str, path: str, *, star: bool
    ) -> frozenset[str] | None:
        """A list of strings, or "*" (-> None) when ``star``."""
        value = m.get(name)
        where = _join(path, name)
        if star and value == ANY:
            return None
        if not isinstance(value, list):
            hint = ' or "*"' if star else ""
            self.err(where, f"must be a list of strings{hint}, got {_kind(value)}")
            return frozenset()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.err(f"{where}[{i}]", f"must be a non-empty string, got {_kind(item)}")
            elif item == ANY:
                self.err(f"{where}[{i}]", '"*" must be used alone, not inside a list')
            else:
                out.append(item)
        if len(set(out)) != len(out):
            self.err(where, "duplicate entries")
        return frozenset(out)

    def quotas(self, value: object, path: str) -> QuotaLimits:
        if value is None:
            return QuotaLimits()
        m = self.mapping(value, path)
        if m is None:
            return QuotaLimits()
        self.fields(m, path, (), _QUOTA_FIELDS)
        got: dict[str, int | None] = {}
        for name in _QUOTA_FIELDS:
            v = m.get(name)
            if v is None:
                got[name] = None
            elif isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                self.err(_join(path, name), f"must be a positive integer, got {v!r}")
                got[name] = None
            else:
                got[name] = v
        return QuotaLimits(**got)

    def retention(self, value: object, path: str) -> Retention:
        if value is None:
            return Retention("none", None)
        if not isinstance(value, str):
            self.err(path, f"must be a string like none, 30d, 1y; got {_kind(value)}")
            return Retention("none", None)
        spec = value.strip().lower()
        if spec == "none":
            return Retention("none", None)
        match = _RETENTION_RE.match(spec)
        if not match or int(match.group(1)) == 0:
            self.err(path, f"invalid retention {value!r} (expected none or <n>h|<n>d|<n>w|<n>y)")
            return Retention("none", None)
        seconds = int(match.group(1)) * _RETENTION_UNIT_S[match.group(2)]
        return Retention(spec, dt.timedelta(seconds=seconds))

    def expiry(self, value: object, path: str) -> dt.datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            self.err(path, f"invalid date {value!r} (expected YYYY-MM-DD or ISO datetime)")
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    def items(self, raw: Mapping[str, Any], name: str, *, required: bool) -> list[Any]:
        value = raw.get(name)
        if value is None:
            if required:
                self.err(name, "required")
            return []
        if not isinstance(value, list):
            self.err(name, f"must be a list, got {_kind(value)}")
            return []
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    version: str
    tenants: Mapping[str, Tenant]
    api_keys: Mapping[str, ApiKey]
    use_cases: Mapping[str, UseCase]
    object_rules: tuple[ObjectRule, ...]
    default_classification: int = LEVELS["INTERNAL"]
    # Uploads, deletions and bulk jobs need the ``ingester`` (or ``admin``) role.
    ingestion_requires_role: bool = False
    source: str = "<memory>"
    _by_hash: Mapping[str, ApiKey] = field(default_factory=dict, repr=False, compare=False)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(source, [f"<file>: not readable: {exc}"]) from exc
        return cls.from_yaml(text, source)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<memory>") -> Policy:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(source, [f"<file>: invalid YAML: {exc}"]) from exc
        return cls.from_mapping(raw, source)

    @classmethod
    def from_mapping(cls, raw: object, source: str = "<memory>") -> Policy:
        c = _Checker()
        if not isinstance(raw, Mapping):
            raise PolicyError(source, [f"<root>: must be a mapping, got {_kind(raw)}"])
        c.fields(
            raw,
            "",
            ("version", "tenants", "use_cases"),
            (
                "api_keys",
                "object_classifications",
                "default_classification",
                "classifications",
                "ingestion_requires_role",
            ),
        )
        ingestion_requires_role = raw.get("ingestion_requires_role", False)
        if not isinstance(ingestion_requires_role, bool):
            c.err(
                "ingestion_requires_role",
                f"must be true or false, got {_kind(ingestion_requires_role)}",
            )
            ingestion_requires_role = False
        version_raw = raw.get("version")
        version = ""
        if isinstance(version_raw, bool) or not isinstance(version_raw, int | str):
            if version_raw is not None:
                c.err("version", f"must be an integer or a string, got {_kind(version_raw)}")
        else:
            version = str(version_raw)
        if "classifications" in raw and raw["classifications"] != list(LEVELS):
            c.err("classifications", f"must be exactly {list(LEVELS)} when given")
        default_level = c.level(raw, "default_classification", "", LEVELS["INTERNAL"])

        tenants: dict[str, Tenant] = {}
        for i, item in enumerate(c.items(raw, "tenants", required=True)):
            path = f"tenants[{i}]"
            m = c.mapping(item, path)
            if m is None:
                continue
            c.fields(m, path, ("id",), ("name", "quotas", "sources"))
            tid = c.string(m, "id", path, ident=True)
            if not tid:
                continue
            if tid in tenants:
                c.err(_join(path, "id"), f"duplicate tenant {tid!r}")
                continue
            sources: list[tuple[str, str]] = []
            for j, src in enumerate(c.items(m, "sources", required=False)):
                spath = _join(path, f"sources[{j}]")
                sm = c.mapping(src, spath)
                if sm is None:
                    continue
                c.fields(sm, spath, ("bucket",), ("prefix",))
                sbucket = c.string(sm, "bucket", spath)
                if sbucket:
                    sources.append((sbucket, c.string(sm, "prefix", spath)))
            tenants[tid] = Tenant(
                id=tid,
                name=c.string(m, "name", path) or tid,
                quotas=c.quotas(m.get("quotas"), _join(path, "quotas")),
                sources=tuple(sources),
            )

        keys: dict[str, ApiKey] = {}
        by_hash: dict[str, ApiKey] = {}
        for i, item in enumerate(c.items(raw, "api_keys", required=False)):
            path = f"api_keys[{i}]"
            m = c.mapping(item, path)
            if m is None:
                continue
            c.fields(
                m, path, ("id", "tenant", "sha256"), ("app", "expires", "mtls_subject", "roles")
            )
            kid = c.string(m, "id", path, ident=True)
            tenant = c.string(m, "tenant", path)
            if tenant and tenant not in tenants:
                c.err(_join(path, "tenant"), f"unknown tenant {tenant!r}")
            digest = c.string(m, "sha256", path).lower()
            if digest and not re.fullmatch(r"[0-9a-f]{64}", digest):
                c.err(_join(path, "sha256"), "must be 64 hex characters (SHA-256 of the key)")
            roles: frozenset[str] = frozenset()
            if m.get("roles") is not None:
                roles = c.str_set(m, "roles", path, star=False) or frozenset()
                for role in sorted(roles - KNOWN_ROLES):
                    c.err(
                        _join(path, "roles"),
                        f"unknown role {role!r} (expected {', '.join(sorted(KNOWN_ROLES))})",
                    )
            subject = c.string(m, "mtls_subject", path) or None
            key = ApiKey(
                id=kid,
                tenant=tenant,
                sha256=digest,
                app=c.string(m, "app", path, ident=m.get("app") is not None),
                expires=c.expiry(m.get("expires"), _join(path, "expires")),
                mtls_subject=subject,
                roles=roles,
            )
            if kid and kid in keys:
                c.err(_join(path, "id"), f"duplicate key id {kid!r}")
            elif kid:
                keys[kid] = key
            if digest and digest in by_hash:
                c.err(_join(path, "sha256"), f"same key hash as key {by_hash[digest].id!r}")
            elif digest:
                by_hash[digest] = key

        use_cases: dict[str, UseCase] = {}
        for i, item in enumerate(c.items(raw, "use_cases", required=True)):
            path = f"use_cases[{i}]"
            m = c.mapping(item, path)
            if m is None:
                continue
            c.fields(
                m,
                path,
                (
                    "id",
                    "owner",
                    "purpose",
                    "allowed_collections",
                    "max_classification",
                    "allowed_models",
                    "human_review",
                    "retention",
                ),
                ("tenant", "tenants", "allowed_keys", "quotas", "flows", "pii"),
            )
            uid = c.string(m, "id", path, ident=True)
            uc_tenants: frozenset[str] = frozenset()
            if ("tenant" in m) == ("tenants" in m):
                c.err(_join(path, "tenants"), "give exactly one of 'tenant' or 'tenants'")
            elif "tenant" in m:
                one = c.string(m, "tenant", path)
                uc_tenants = frozenset([one]) if one else frozenset()
            else:
                uc_tenants = c.str_set(m, "tenants", path, star=False) or frozenset()
                if not uc_tenants and isinstance(m.get("tenants"), list):
                    c.err(_join(path, "tenants"), "must not be empty")
            for t in sorted(uc_tenants - tenants.keys()):
                where = _join(path, "tenant" if "tenant" in m else "tenants")
                c.err(where, f"unknown tenant {t!r}")
            allowed_keys: frozenset[str] | None = None
            if m.get("allowed_keys") is not None:
                allowed_keys = c.str_set(m, "allowed_keys", path, star=True)
                for k in sorted((allowed_keys or frozenset()) - keys.keys()):
                    c.err(_join(path, "allowed_keys"), f"unknown key id {k!r}")
            pii = m.get("pii", "allow")
            if pii not in PII_MODES:
                c.err(_join(path, "pii"), f"must be one of {', '.join(PII_MODES)}, got {pii!r}")
                pii = "allow"
            review = m.get("human_review")
            if review is not None and review not in ("required", "optional"):
                c.err(
                    _join(path, "human_review"),
                    f"must be 'required' or 'optional', got {review!r}",
                )
            use_case = UseCase(
                id=uid,
                tenants=uc_tenants,
                owner=c.string(m, "owner", path),
                purpose=c.string(m, "purpose", path),
                allowed_collections=(
                    c.str_set(m, "allowed_collections", path, star=True)
                    if "allowed_collections" in m
                    else frozenset()
                ),
                max_classification=c.level(m, "max_classification", path, None),
                allowed_models=(
                    c.str_set(m, "allowed_models", path, star=True)
                    if "allowed_models" in m
                    else frozenset()
                ),
                allowed_keys=allowed_keys,
                human_review=review == "required",
                retention=c.retention(m.get("retention"), _join(path, "retention")),
                quotas=c.quotas(m.get("quotas"), _join(path, "quotas")),
                flows=c.str_set(m, "flows", path, star=True) if "flows" in m else frozenset(),
                pii=pii,
            )
            if uid and uid in use_cases:
                c.err(_join(path, "id"), f"duplicate use case {uid!r}")
            elif uid:
                use_cases[uid] = use_case

        rules: list[ObjectRule] = []
        seen_rules: set[tuple[str, str]] = set()
        for i, item in enumerate(c.items(raw, "object_classifications", required=False)):
            path = f"object_classifications[{i}]"
            m = c.mapping(item, path)
            if m is None:
                continue
            c.fields(m, path, ("bucket", "classification"), ("prefix",))
            bucket = c.string(m, "bucket", path)
            prefix = c.string(m, "prefix", path)
            level = c.level(m, "classification", path, None)
            if (bucket, prefix) in seen_rules:
                c.err(path, f"duplicate rule for bucket {bucket!r} prefix {prefix!r}")
            seen_rules.add((bucket, prefix))
            if bucket and level:
                rules.append(ObjectRule(bucket=bucket, prefix=prefix, classification=level))

        if c.problems:
            raise PolicyError(source, c.problems)
        # longest prefix first, so the first match is the most specific
        rules.sort(key=lambda r: (r.bucket, -len(r.prefix)))
        return cls(
            version=version,
            tenants=tenants,
            api_keys=keys,
            use_cases=use_cases,
            object_rules=tuple(rules),
            default_classification=default_level,
            ingestion_requires_role=ingestion_requires_role,
            source=source,
            _by_hash=by_hash,
        )

    # -- keys --------------------------------------------------------------------------------

    def authenticate(
        self,
        api_key: str | None,
        *,
        mtls_subject: str | None = None,
        now: dt.datetime | None = None,
    ) -> ApiKey:
        """The policy entry of an API key (expiry and mTLS subject checked)."""
        if not api_key:
            raise Unauthenticated("missing API key", reason="API_KEY_MISSING")
        digest = hash_key(api_key)
        entry = self._by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            raise Unauthenticated("unknown API key", reason="API_KEY_INVALID")
        moment = now or dt.datetime.now(dt.UTC)
        if not entry.active(moment):
            assert entry.expires is not None
            raise Unauthenticated(
                f"API key {entry.id!r} expired on {entry.expires.isoformat()}",
                reason="API_KEY_EXPIRED",
                metadata={"key_id": entry.id},
            )
        if entry.mtls_subject is not None and not subjects_equal(mtls_subject, entry.mtls_subject):
            raise Unauthenticated(
                f"API key {entry.id!r} must be presented with its client certificate "
                f"({entry.mtls_subject!r}); "
                + (f"the peer presented {mtls_subject!r}" if mtls_subject else "none presented"),
                reason="MTLS_SUBJECT_MISMATCH",
                metadata={"key_id": entry.id},
            )
        return entry

    def active_keys(self, app: str, now: dt.datetime | None = None) -> list[ApiKey]:
        """The keys of an application still valid at ``now`` (several during a rotation)."""
        moment = now or dt.datetime.now(dt.UTC)
        return sorted(
            (k for k in self.api_keys.values() if k.app == app and k.active(moment)),
            key=lambda k: k.id,
        )

    def has_role(self, key_id: str, role: str) -> bool:
        key = self.api_keys.get(key_id)
        return key is not None and role in key.roles

    # -- authorization -----------------------------------------------------------------------

    def authorize(
        self,
        principal_tenant: str,
        key_id: str,
        use_case: str,
        collections: Sequence[str] = (),
        model: str = "",
        on_behalf: bool = False,
    ) -> Decision:
        """Decide whether ``key_id`` of ``principal_tenant`` may run ``use_case``.

        ``on_behalf``: the key acts for ``principal_tenant`` (``x-docfactory-on-behalf-of``,
        already checked to carry the ``worker`` role): a platform worker -- e.g. a dossier run's
        retrieval step -- reads under the tenant's use case, with its ceiling and collections.

        ``collections``: the collections the request asks for (empty: every allowed one).
        ``model``: the generative model that will actually answer (resolve the server default
        before calling); "" when none is involved (Search, extractive answers).
        """
        if not use_case:
            raise InvalidArgument(
                "a use case is required: set the request's use_case field",
                reason="USE_CASE_REQUIRED",
            )
        meta = {"use_case": use_case, "tenant": principal_tenant}
        uc = self.use_cases.get(use_case)
        if uc is None:
            raise PermissionDenied(
                f"unknown use case {use_case!r} (policy version {self.version})",
                reason="UNKNOWN_USE_CASE",
                metadata=meta,
            )
        if principal_tenant not in uc.tenants:
            raise PermissionDenied(
                f"use case {use_case!r} is not allowed for tenant {principal_tenant!r}",
                reason="USE_CASE_NOT_ALLOWED_FOR_TENANT",
                metadata=meta,
            )
        key = self.api_keys.get(key_id)
        worker_for_tenant = on_behalf and key is not None and "worker" in key.roles
        if key is not None and key.tenant != principal_tenant and not worker_for_tenant:
            raise PermissionDenied(
                f"key {key_id!r} belongs to another tenant",
                reason="KEY_TENANT_MISMATCH",
                metadata={**meta, "key_id": key_id},
            )
        if uc.allowed_keys is not None and key_id not in uc.allowed_keys:
            raise PermissionDenied(
                f"key {key_id!r} is not allowed for use case {use_case!r}",
                reason="USE_CASE_NOT_ALLOWED_FOR_KEY",
                metadata={**meta, "key_id": key_id},
            )
        effective: tuple[str, ...] | None
        if collections:
            if uc.allowed_collections is not None:
                for name in collections:
                    if name not in uc.allowed_collections:
                        raise PermissionDenied(
                            f"collection {name!r} is not allowed for use case {use_case!r}",
                            reason="COLLECTION_NOT_ALLOWED",
                            metadata={**meta, "collection": name},
                        )
            effective = tuple(dict.fromkeys(collections))
        else:
            effective = (
                None if uc.allowed_collections is None else tuple(sorted(uc.allowed_collections))
            )
        if model and uc.allowed_models is not None and model not in uc.allowed_models:
            raise PermissionDenied(
                f"model {model!r} is not allowed for use case {use_case!r}",
                reason="MODEL_NOT_ALLOWED",
                metadata={**meta, "model": model},
            )
        tenant = self.tenants.get(principal_tenant)
        return Decision(
            tenant=principal_tenant,
            key_id=key_id,
            use_case=use_case,
            max_classification=uc.max_classification,
            collections=effective,
            model=model,
            human_review=uc.human_review,
            retention=uc.retention,
            quotas=uc.quotas,
            tenant_quotas=tenant.quotas if tenant else QuotaLimits(),
            policy_version=self.version,
            pii=uc.pii,
        )

    def pii_ingestion_mode(self, tenant: str, collection: str) -> str:
        """What ingestion does with personal data in ``collection`` of ``tenant``: the strictest
        ``pii`` among the use cases of that tenant allowed to read the collection, so a use
        case with ``redact_at_ingest`` never reads a chunk that kept the values."""
        best = 0
        for uc in self.use_cases.values():
            if tenant not in uc.tenants:
                continue
            if uc.allowed_collections is not None and collection not in uc.allowed_collections:
                continue
            best = max(best, PII_MODES.index(uc.pii))
        return PII_MODES[best]

    # -- objects -----------------------------------------------------------------------------

    def source_granted(self, tenant: str, bucket: str, prefix: str) -> bool:
        """Whether ``tenant``'s bulk jobs may read ``bucket``/``prefix``: the prefix must lie
        within one the policy grants the tenant (``tenants[].sources``)."""
        t = self.tenants.get(tenant)
        if t is None:
            return False
        return any(b == bucket and prefix.startswith(p) for b, p in t.sources)

    def classification_for_object(self, bucket: str, key: str) -> int:
        """Default classification rank of a MinIO object: longest matching prefix wins."""
        for rule in self.object_rules:  # sorted by bucket, longest prefix first
            if rule.bucket == bucket and key.startswith(rule.prefix):
                return rule.classification
        return self.default_classification


def level_rank(name: str) -> int:
    """Rank of a classification name (InvalidArgument UNKNOWN_CLASSIFICATION otherwise)."""
    try:
        return LEVELS[name.upper()]
    except KeyError:
        raise InvalidArgument(
            f"unknown classification {name!r} (expected one of {', '.join(LEVELS)})",
            reason="UNKNOWN_CLASSIFICATION",
        ) from None


# ---------------------------------------------------------------------------------------------
# Reloading store
# ---------------------------------------------------------------------------------------------


class PolicyStore:
    """The current policy, reloaded when the file changes; keeps the last good one on error.

    The file's (mtime_ns, size, inode) is checked at most every ``check_interval_s`` seconds
    (on ``current()``). A file that fails validation is not applied: the previous policy stays
    in force, ``last_error`` holds the problem (logged once per faulty version of the file) and
    ``on_error`` is called. The first load must succeed (PolicyError otherwise).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[PolicyError], None] | None = None,
    ) -> None:
        self._path = Path(path)
        self._interval = check_interval_s
        self._clock = clock
        self._on_error = on_error
        self._lock = threading.Lock()
        self._last_check = clock()
        self._stamp = self._stat()
        self._policy = Policy.load(self._path)
        self._error: PolicyError | None = None
        self._error_stamp: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def last_error(self) -> PolicyError | None:
        """The error of the file on disk when it is not the one in force, else None."""
        return self._error

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Policy:
        now = self._clock()
        if now - self._last_check >= self._interval:
            self.reload()
        return self._policy

    def reload(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or ``force``); True when a new policy was applied."""
        with self._lock:
            self._last_check = self._clock()
            stamp = self._stat()
            if stamp is None:
                self._fail(PolicyError(str(self._path), ["<file>: not readable"]), None)
                return False
            if not force and stamp == self._stamp:
                return False
            try:
                policy = Policy.load(self._path)
            except PolicyError as exc:
                self._fail(exc, stamp)
                return False
            previous = self._policy.version
            self._policy = policy
            self._stamp = stamp
            self._error = None
            self._error_stamp = None
            log.info(
                "governance policy reloaded from %s: version %s -> %s",
                self._path,
                previous,
                policy.version,
            )
            return True

    def _fail(self, exc: PolicyError, stamp: tuple[int, int, int] | None) -> None:
        if self._error is not None and stamp == self._error_stamp:
            return  # already reported for this version of the file
        self._error = exc
        self._error_stamp = stamp
        log.error(
            "governance policy %s rejected, keeping version %s: %s",
            self._path,
            self._policy.version,
            exc.message,
        )
        if self._on_error is not None:
            self._on_error(exc)
