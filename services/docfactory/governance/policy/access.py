"""The policy in force: entries by id, and the decisions it takes on a request."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from docfactory.core.errors import InvalidArgument, PermissionDenied
from docfactory.governance.policy.auth import authenticate
from docfactory.governance.policy.model import (
    LEVELS,
    PII_MODES,
    ApiKey,
    ObjectRule,
    PolicyDocument,
    QuotaLimits,
    Retention,
    Tenant,
    UseCase,
    parse_policy,
    read_policy,
    validate_policy,
)


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


@dataclass(frozen=True)
class Policy:
    version: str
    tenants: Mapping[str, Tenant]
    api_keys: Mapping[str, ApiKey]
    use_cases: Mapping[str, UseCase]
    object_rules: tuple[ObjectRule, ...]  # by bucket, longest prefix first
    default_classification: int = LEVELS["INTERNAL"]
    # Uploads, deletions and bulk jobs need the ``ingester`` (or ``admin``) role.
    ingestion_requires_role: bool = False
    source: str = "<memory>"
    _by_hash: Mapping[str, ApiKey] = field(default_factory=dict, repr=False, compare=False)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        return cls.of(read_policy(path), str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<memory>") -> Policy:
        return cls.of(parse_policy(text, source), source)

    @classmethod
    def from_mapping(cls, raw: object, source: str = "<memory>") -> Policy:
        return cls.of(validate_policy(raw, source), source)

    @classmethod
    def of(cls, doc: PolicyDocument, source: str = "<memory>") -> Policy:
        """The lookups of a validated document (its ids are unique)."""
        return cls(
            version=doc.version,
            tenants={t.id: t for t in doc.tenants},
            api_keys={k.id: k for k in doc.api_keys},
            use_cases={u.id: u for u in doc.use_cases},
            # longest prefix first, so the first match is the most specific
            object_rules=tuple(
                sorted(doc.object_classifications, key=lambda r: (r.bucket, -len(r.prefix)))
            ),
            default_classification=doc.default_classification,
            ingestion_requires_role=doc.ingestion_requires_role,
            source=source,
            _by_hash={k.sha256: k for k in doc.api_keys},
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
        return authenticate(self._by_hash, api_key, mtls_subject=mtls_subject, now=now)

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
        return any(s.bucket == bucket and prefix.startswith(s.prefix) for s in t.sources)

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
