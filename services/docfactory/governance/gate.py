"""Governance on the request path: the one object services consult before retrieving, and
after answering. Without a policy file (embedded default) it only audits; with one, every
Search/Answer must declare an allowed use case, runs under its classification ceiling and
collections, is counted against quotas, and may be held for human review.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from docfactory.core.auth import KeyRefused, KeyStore, Principal, note_audited
from docfactory.core.errors import DocfactoryError, PermissionDenied, Unauthenticated
from docfactory.core.methods import method_names
from docfactory.governance.audit import AuditLog
from docfactory.governance.policy import Decision, Policy, PolicyStore
from docfactory.governance.quotas import QuotaEnforcer, SqlQuotaStore
from docfactory.governance.reviews import ReviewStore
from docfactory.index.v1 import index_service_pb2 as index_pb
from docfactory.ingestion.v1 import ingestion_service_pb2 as ingestion_pb
from docfactory.jobs.v1 import jobs_service_pb2 as jobs_pb
from docfactory.measurement.v1 import measurement_service_pb2 as meas_pb

log = logging.getLogger("docfactory.governance")


@dataclass(frozen=True)
class Grant:
    """What retrieval and generation may do for one request."""

    use_case: str
    max_classification: int  # 0 = no ceiling (no policy configured)
    collections: tuple[str, ...]  # effective collections (empty = all of the tenant)
    human_review: bool
    keep_question: bool
    decision: Decision | None


class PolicyKeys:
    """API keys from the policy file (hashed, expiry, rotation, roles)."""

    def __init__(self, store: PolicyStore) -> None:
        self._store = store

    def authenticate(self, api_key: str | None, *, mtls_subject: str | None = None) -> Principal:
        policy = self._store.current()
        try:
            key = policy.authenticate(api_key or "", mtls_subject=mtls_subject)
        except Unauthenticated as err:
            # A known key refused (expired, wrong certificate): name it, so it is audited.
            known = policy.api_keys.get(err.metadata.get("key_id", ""))
            if known is None:
                raise
            who = Principal(
                tenant=known.tenant, key_id=known.id, api_key="", roles=frozenset(known.roles)
            )
            raise KeyRefused(err, who) from err
        return Principal(
            tenant=key.tenant, key_id=key.id, api_key=api_key or "", roles=frozenset(key.roles)
        )

    def knows_tenant(self, tenant: str) -> bool:
        return tenant in self._store.current().tenants


#: RPCs that write documents (uploads, path ingestion, updates, deletions, bulk jobs, points).
INGESTION_WRITE_METHODS = (
    method_names(
        ingestion_pb.DESCRIPTOR,
        "IngestionService",
        "UploadDocument",
        "IngestPath",
        "UpdateDocument",
        "DeleteDocument",
    )
    | method_names(jobs_pb.DESCRIPTOR, "JobsService", "IngestPrefix", "CancelJob", "DeleteJob")
    | method_names(
        index_pb.DESCRIPTOR,
        "IndexService",
        "UpsertPoints",
        "DeletePoints",
        "SetDocumentClassification",
    )
)
#: Roles that may call them when the policy says ``ingestion_requires_role: true``.
WRITE_ROLES = frozenset({"ingester", "admin", "worker"})
#: RPCs behind the console's usage page (``console/auth.py`` PERMISSIONS["usage"]).
USAGE_METHODS = method_names(meas_pb.DESCRIPTOR, "MeasurementService", "GetUsage")
USAGE_ROLES = frozenset({"owner", "operator", "admin"})


@dataclass(frozen=True)
class MethodRoles:
    """Who may call an RPC when a policy is configured: a key with one of ``roles``."""

    roles: frozenset[str]
    reason: str  # the ErrorInfo reason (and audit outcome) of a refusal
    needs: str  # for the message: "the ingester role"
    #: Whether the policy asks for the check (default: always, with a policy).
    applies: Callable[[Policy], bool] = lambda _policy: True
    #: A worker acting for a tenant passes (the job it runs was authorized when submitted).
    on_behalf_passes: bool = False


_INGESTION_WRITE = MethodRoles(
    roles=WRITE_ROLES,
    reason="INGESTER_ROLE_REQUIRED",
    needs="the ingester role (policy: ingestion_requires_role)",
    applies=lambda policy: bool(policy.ingestion_requires_role),
    on_behalf_passes=True,
)
_USAGE_READ = MethodRoles(
    roles=USAGE_ROLES,
    reason="USAGE_ROLE_REQUIRED",
    needs="the owner, operator or admin role",
)
#: Role requirements by RPC (full method name), checked by :meth:`GovernanceGate.authorize_method`.
METHOD_ROLES: Mapping[str, MethodRoles] = {
    **dict.fromkeys(INGESTION_WRITE_METHODS, _INGESTION_WRITE),
    **dict.fromkeys(USAGE_METHODS, _USAGE_READ),
}

#: The audit action of a failed RPC, by status code: what the interceptor writes (once, unless
#: a layer below already did) for an identified caller. Not audited: failures of the server's
#: own resources (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED...), which say
#: nothing about the caller and could not be written while the database is down, and
#: FAILED_PRECONDITION (a poll of a draft still under review).
FAILURE_ACTIONS: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.PERMISSION_DENIED: "DENIED",
    grpc.StatusCode.UNAUTHENTICATED: "DENIED",  # a known key refused (expired...)
    grpc.StatusCode.INVALID_ARGUMENT: "REJECTED",
    grpc.StatusCode.OUT_OF_RANGE: "REJECTED",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.INTERNAL: "ERROR",
    grpc.StatusCode.UNKNOWN: "ERROR",
    grpc.StatusCode.DATA_LOSS: "ERROR",
}


class GovernanceGate:
    def __init__(
        self,
        *,
        audit: AuditLog,
        policy: PolicyStore | None = None,
        quotas: QuotaEnforcer | None = None,
        reviews: ReviewStore | None = None,
    ) -> None:
        self.audit = audit
        self.policy = policy
        self.quotas = quotas
        self.reviews = reviews

    @classmethod
    def build(cls, engine: Engine, policy_file: str = "") -> GovernanceGate:
        policy = PolicyStore(Path(policy_file)) if policy_file else None
        return cls(
            audit=AuditLog(engine),
            policy=policy,
            quotas=QuotaEnforcer(SqlQuotaStore(engine)) if policy else None,
            reviews=ReviewStore(engine) if policy else None,
        )

    def authenticator(self, fallback: KeyStore | None) -> Any:
        return PolicyKeys(self.policy) if self.policy else fallback

    def authorize_method(self, method: str, principal: Principal) -> None:
        """Role checks by RPC (:data:`METHOD_ROLES`), run by the interceptor once the caller
        is authenticated, only with a policy (without one the APIs check no role, as the
        console does).

        With ``ingestion_requires_role: true`` in the policy, the RPCs that write documents
        (:data:`INGESTION_WRITE_METHODS`) need the ``ingester`` or ``admin`` role; a worker
        acting for a tenant (``x-docfactory-on-behalf-of``) passes: the job it runs was
        authorized when it was submitted. GetUsage needs the console's usage roles (owner,
        operator, admin). A refusal is audited (``DENIED``)."""
        rule = METHOD_ROLES.get(method)
        if self.policy is None or rule is None:
            return
        if not rule.applies(self.policy.current()):
            return
        if (rule.on_behalf_passes and principal.on_behalf_of) or principal.roles & rule.roles:
            return
        rpc = method.rsplit("/", 1)[-1]
        self.record(principal, action="DENIED", outcome=rule.reason, details={"rpc": rpc})
        err = PermissionDenied(
            f"{rpc} needs a key with {rule.needs}",
            reason=rule.reason,
            metadata={"key_id": principal.key_id, "rpc": rpc},
        )
        err.audited = True
        raise err

    def source_granted(self, tenant: str, bucket: str, prefix: str) -> bool:
        """Whether the tenant's bulk jobs may read bucket/prefix (no policy: yes)."""
        if self.policy is None:
            return True
        return self.policy.current().source_granted(tenant, bucket, prefix)

    def audit_refusal(
        self,
        method: str,
        principal: Principal,
        err: DocfactoryError,
        context: Mapping[str, str] | None = None,
    ) -> bool:
        """Audit a failed RPC that no layer below recorded; called by the interceptor. The
        action comes from :data:`FAILURE_ACTIONS` (PERMISSION_DENIED -> ``DENIED``,
        INVALID_ARGUMENT -> ``REJECTED``, NOT_FOUND -> ``NOT_FOUND``, INTERNAL -> ``ERROR``);
        the outcome is the error's reason. Details: the RPC, ``context`` (the ids the request
        named, the tenant a worker asked to act for), the invalid field, an INTERNAL error's
        correlation id -- never the error's message. False when the code is not audited."""
        action = FAILURE_ACTIONS.get(err.code)
        if action is None:
            return False
        details: dict[str, Any] = {"rpc": method.rsplit("/", 1)[-1][:64]}
        details.update({k[:64]: str(v)[:128] for k, v in (context or {}).items()})
        for name in ("field", "correlation_id"):
            value = err.metadata.get(name)
            if value:
                details[name] = value[:128]
        self.record(principal, action=action, outcome=err.reason, details=details)
        return True

    def authorize(
        self, principal: Principal, use_case: str, collections: Sequence[str], model: str
    ) -> Grant:
        if self.policy is None:
            return Grant(use_case, 0, tuple(collections), False, True, None)
        decision = self.policy.current().authorize(
            principal.tenant,
            principal.key_id,
            use_case,
            collections,
            model,
            on_behalf=bool(principal.on_behalf_of),
        )
        if self.quotas is not None:
            self.quotas.consume_for(decision)
        if decision.collections is None:
            effective = tuple(collections)
        elif collections:
            effective = tuple(c for c in collections if c in decision.collections)
        else:
            effective = tuple(decision.collections)
        return Grant(
            use_case=decision.use_case,
            max_classification=decision.max_classification,
            collections=effective,
            human_review=decision.human_review,
            keep_question=decision.retention.duration is not None,
            decision=decision,
        )

    def record(
        self,
        principal: Principal,
        *,
        action: str,
        use_case: str = "",
        outcome: str = "OK",
        document_ids: Sequence[str] = (),
        model: str = "",
        latency_ms: float = 0.0,
        question: str | None = None,
        grant: Grant | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an audit record; returns its sequence number (the id clients quote, e.g.
        ``AnswerSummary.answer_id`` for feedback)."""
        retention = None
        if grant is not None and grant.decision is not None:
            retention = grant.decision.retention.duration
        try:
            rec = self.audit.append(
                tenant=principal.tenant,
                key_id=principal.key_id,
                use_case=use_case,
                action=action,
                outcome=outcome,
                document_ids=list(dict.fromkeys(document_ids)),
                model=model,
                latency_ms=round(latency_ms),
                question=question if retention is not None else None,
                question_retention=retention,
                details=dict(details or {}),
            )
        except Exception:  # the audit must never be silently skipped: fail the request
            log.exception("audit append failed")
            raise
        if outcome != "OK":
            note_audited(outcome)  # the interceptor does not record this failure again
        return int(rec.seq)

    def record_tokens(self, grant: Grant, principal: Principal, tokens: int) -> None:
        if self.quotas is not None and grant.decision is not None and tokens > 0:
            self.quotas.record_tokens(
                tenant=principal.tenant, use_case=grant.use_case, tokens=tokens
            )
