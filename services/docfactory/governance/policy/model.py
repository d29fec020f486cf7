"""The policy file's schema: pydantic models of the YAML, and loading.

Every model forbids unknown fields (a typo must not silently disable a control); ``field:`` or
``field: ""`` counts as not given. The scalar types of the file (classification levels,
retention, expiry dates, quotas, identifiers, "*"-or-list sets) are ``Annotated`` types below;
the rules that span fields (references between tenants, keys and use cases, duplicates) are the
model validators. Problems come out as :class:`PolicyError` with their field paths
(:mod:`.errors`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from docfactory.governance.policy.errors import Loc, PolicyError, kind, problems, problems_of

#: Classification levels and their ranks (higher = more sensitive).
LEVELS: dict[str, int] = {"PUBLIC": 1, "INTERNAL": 2, "CONFIDENTIAL": 3, "RESTRICTED": 4}
LEVEL_NAMES: dict[int, str] = {rank: name for name, rank in LEVELS.items()}
KNOWN_ROLES = frozenset({"reviewer", "admin", "auditor", "ingester", "worker", "operator", "owner"})
ANY = "*"
#: Personal data per use case (docfactory.pii), least to most strict.
PII_MODES = ("allow", "mask_in_answers", "redact_at_ingest")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_RETENTION_RE = re.compile(r"^(\d+)([hdwy])$")
_RETENTION_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


# ---------------------------------------------------------------------------------------------
# Scalar types of the file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """How long the question text may be kept. ``duration`` None means: not kept at all."""

    spec: str
    duration: dt.timedelta | None

    @property
    def keeps_question(self) -> bool:
        return self.duration is not None


def _retention(value: object) -> Retention:
    if not isinstance(value, str):
        raise ValueError(f"must be a string like none, 30d, 1y; got {kind(value)}")
    spec = value.strip().lower()
    if spec == "none":
        return Retention("none", None)
    match = _RETENTION_RE.match(spec)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid retention {value!r} (expected none or <n>h|<n>d|<n>w|<n>y)")
    return Retention(spec, dt.timedelta(seconds=int(match.group(1)) * _RETENTION_UNIT_S[match[2]]))


def _level(value: object) -> int:
    if not isinstance(value, str) or value not in LEVELS:
        raise ValueError(f"unknown level {value!r} (expected one of {', '.join(LEVELS)})")
    return LEVELS[value]


def _expiry(value: object) -> dt.datetime | None:
    """A date (midnight UTC) or an ISO datetime (UTC when naive)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"invalid date {value!r} (expected YYYY-MM-DD or ISO datetime)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _positive(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def _version(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be an integer or a string, got {kind(value)}")
    return str(value)


def _ident(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(f"invalid identifier {value!r} (letters, digits, . _ : -)")
    return value


def _sha256(value: str) -> str:
    digest = value.lower()
    if not _SHA256_RE.match(digest):
        raise ValueError("must be 64 hex characters (SHA-256 of the key)")
    return digest


def _name(value: str) -> str:
    if not value:
        raise ValueError("must be a non-empty string")
    if value == ANY:
        raise ValueError('"*" must be used alone, not inside a list')
    return value


def _string_list(*, star: bool) -> Callable[[object], object]:
    """A list of distinct strings; with ``star``, "*" (every one) gives None."""

    def check(value: object) -> object:
        if star and value == ANY:
            return None
        if not isinstance(value, list):
            hint = ' or "*"' if star else ""
            raise ValueError(f"must be a list of strings{hint}, got {kind(value)}")
        names = [v for v in value if isinstance(v, str)]
        if len(set(names)) != len(names):
            raise ValueError("duplicate entries")
        return value

    return check


def _one_of(*choices: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _review(value: object) -> bool:
    if value not in ("required", "optional"):
        raise ValueError(f"must be 'required' or 'optional', got {value!r}")
    return value == "required"


def _known_roles(roles: frozenset[str]) -> frozenset[str]:
    unknown = sorted(roles - KNOWN_ROLES)
    if unknown:
        names = ", ".join(repr(r) for r in unknown)
        raise ValueError(f"unknown role {names} (expected {', '.join(sorted(KNOWN_ROLES))})")
    return roles


def _not_empty(names: frozenset[str]) -> frozenset[str]:
    if not names:
        raise ValueError("must not be empty")
    return names


def _classifications(value: object) -> tuple[str, ...]:
    if value != list(LEVELS):
        raise ValueError(f"must be exactly {list(LEVELS)} when given")
    return tuple(LEVELS)


Ident = Annotated[str, AfterValidator(_ident)]
Name = Annotated[str, AfterValidator(_name)]
#: A classification level name in the file, its rank in the model.
Level = Annotated[int, PlainValidator(_level)]
RetentionSpec = Annotated[Retention, PlainValidator(_retention)]
Expiry = Annotated[dt.datetime | None, PlainValidator(_expiry)]
Limit = Annotated[int | None, PlainValidator(_positive)]
#: A list of names, or "*" (None: every one).
NamesOrAny = Annotated[frozenset[Name] | None, BeforeValidator(_string_list(star=True))]
Names = Annotated[frozenset[Name], BeforeValidator(_string_list(star=False))]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        """``field:`` and ``field: ""`` mean "not given" (so a required one is reported)."""
        if isinstance(data, Mapping):
            return cls._prepare({k: v for k, v in data.items() if v is not None and v != ""})
        return data

    @classmethod
    def _prepare(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        """Rewrite the fields of a mapping before validation (none by default)."""
        return data


class QuotaLimits(_Model):
    """None = unlimited."""

    requests_per_minute: Limit = None
    requests_per_day: Limit = None
    tokens_per_day: Limit = None

    @property
    def unlimited(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.requests_per_day is None
            and self.tokens_per_day is None
        )


class Source(_Model):
    """An object-store location a tenant's bulk jobs may read."""

    bucket: str
    prefix: str = ""


class Tenant(_Model):
    id: Ident
    name: str = Field(default_factory=lambda data: data.get("id", ""))
    quotas: QuotaLimits = Field(default_factory=QuotaLimits)
    # Object-store sources this tenant's bulk jobs (IngestPrefix) may read; none = nothing.
    sources: tuple[Source, ...] = ()


class ApiKey(_Model):
    id: Ident
    tenant: str
    sha256: Annotated[str, AfterValidator(_sha256)]
    app: Ident = ""
    expires: Expiry = None
    mtls_subject: str | None = None
    roles: Annotated[Names, AfterValidator(_known_roles)] = frozenset()

    def active(self, now: dt.datetime) -> bool:
        return self.expires is None or self.expires > now


class UseCase(_Model):
    id: Ident
    # The file gives ``tenant: x`` or ``tenants: [x, y]``, not both.
    tenants: Annotated[Names, AfterValidator(_not_empty)]
    owner: str
    purpose: str
    allowed_collections: NamesOrAny  # None = "*"
    max_classification: Level
    allowed_models: NamesOrAny  # None = "*"
    allowed_keys: NamesOrAny = None  # None = "*": every key of an allowed tenant
    human_review: Annotated[bool, PlainValidator(_review)]
    retention: RetentionSpec
    quotas: QuotaLimits = Field(default_factory=QuotaLimits)
    # Dossier workflows (docfactory.workflows) this use case may run; None = "*".
    flows: NamesOrAny = frozenset()
    pii: Annotated[str, PlainValidator(_one_of(*PII_MODES))] = "allow"

    @classmethod
    def _prepare(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        if ("tenant" in data) == ("tenants" in data):
            raise problems([(("tenants",), "give exactly one of 'tenant' or 'tenants'")])
        if "tenant" in data:
            one = data.pop("tenant")
            if not isinstance(one, str):
                raise problems([(("tenant",), f"must be a string, got {kind(one)}")])
            data["tenants"] = [one]
        return data


class ObjectRule(_Model):
    """Default classification of the objects under ``bucket``/``prefix``."""

    bucket: str
    prefix: str = ""
    classification: Level


class PolicyDocument(_Model):
    """The policy file as written (lists in file order); see :class:`Policy` for lookups."""

    version: Annotated[str, PlainValidator(_version)]
    tenants: list[Tenant]
    api_keys: list[ApiKey] = Field(default_factory=list)
    use_cases: list[UseCase]
    object_classifications: list[ObjectRule] = Field(default_factory=list)
    default_classification: Level = LEVELS["INTERNAL"]
    # Only as documentation in the file: the levels, which must be the known ones.
    classifications: Annotated[tuple[str, ...], PlainValidator(_classifications)] = ()
    # Uploads, deletions and bulk jobs need the ``ingester`` (or ``admin``) role.
    ingestion_requires_role: StrictBool = False

    @model_validator(mode="wrap")
    @classmethod
    def _references(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> PolicyDocument:
        """Ids unique, and every tenant or key a use case or key names is defined."""
        doc: PolicyDocument = handler(data)
        found: list[tuple[Loc, str]] = []
        tenants: set[str] = set()
        for i, tenant in enumerate(doc.tenants):
            if tenant.id in tenants:
                found.append((("tenants", i, "id"), f"duplicate tenant {tenant.id!r}"))
            tenants.add(tenant.id)
        keys: set[str] = set()
        hashes: dict[str, str] = {}
        for i, key in enumerate(doc.api_keys):
            if key.tenant not in tenants:
                found.append((("api_keys", i, "tenant"), f"unknown tenant {key.tenant!r}"))
            if key.id in keys:
                found.append((("api_keys", i, "id"), f"duplicate key id {key.id!r}"))
            keys.add(key.id)
            if key.sha256 in hashes:
                found.append(
                    (("api_keys", i, "sha256"), f"same key hash as key {hashes[key.sha256]!r}")
                )
            hashes.setdefault(key.sha256, key.id)
        use_cases: set[str] = set()
        for i, uc in enumerate(doc.use_cases):
            written = (
                "tenant" if isinstance(data, Mapping) and _wrote_tenant(data, i) else "tenants"
            )
            found.extend(
                (("use_cases", i, written), f"unknown tenant {t!r}")
                for t in sorted(uc.tenants - tenants)
            )
            found.extend(
                (("use_cases", i, "allowed_keys"), f"unknown key id {k!r}")
                for k in sorted((uc.allowed_keys or frozenset()) - keys)
            )
            if uc.id in use_cases:
                found.append((("use_cases", i, "id"), f"duplicate use case {uc.id!r}"))
            use_cases.add(uc.id)
        rules: set[tuple[str, str]] = set()
        for i, rule in enumerate(doc.object_classifications):
            if (rule.bucket, rule.prefix) in rules:
                found.append(
                    (
                        ("object_classifications", i),
                        f"duplicate rule for bucket {rule.bucket!r} prefix {rule.prefix!r}",
                    )
                )
            rules.add((rule.bucket, rule.prefix))
        if found:
            raise problems(found)
        return doc


def _wrote_tenant(data: Mapping[str, Any], i: int) -> bool:
    """Whether use case ``i`` of the file used ``tenant:`` (to name that field in errors)."""
    entry = data["use_cases"][i]
    return isinstance(entry, Mapping) and "tenant" in entry


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def validate_policy(raw: object, source: str = "<memory>") -> PolicyDocument:
    """Validate a parsed policy; :class:`PolicyError` lists every problem with its path."""
    if not isinstance(raw, Mapping):
        raise PolicyError(source, [f"<root>: must be a mapping, got {kind(raw)}"])
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(source, problems_of(exc)) from exc


def parse_policy(text: str, source: str = "<memory>") -> PolicyDocument:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"<file>: invalid YAML: {exc}"]) from exc
    return validate_policy(raw, source)


def read_policy(path: str | os.PathLike[str]) -> PolicyDocument:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"<file>: not readable: {exc}"]) from exc
    return parse_policy(text, str(path))
