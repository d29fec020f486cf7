"""GovernanceService domain: what the GovernanceService RPCs do, without the transport.

Role checks (reviewer, auditor), human review (list, claim, decide, release) with its audit
records, the policy's use cases visible to a tenant, audit verification and export. The
servicer converts protos to these calls and back, nothing else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

from docfactory.core.auth import Principal
from docfactory.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from docfactory.core.pagination import next_page, page_request
from docfactory.governance.audit import AuditLog, VerifyReport, canonical_json
from docfactory.governance.gate import GovernanceGate
from docfactory.governance.reviews import (
    DECISIONS,
    DEFAULT_CLAIM,
    ReleasedAnswer,
    Review,
    ReviewStore,
)

REVIEWER = "reviewer"
AUDITOR = "auditor"
#: Audit lines per ExportAudit message.
EXPORT_BATCH = 500


@dataclass(frozen=True)
class UseCaseView:
    """A use case of the policy, as a tenant may see it."""

    id: str
    owner: str
    purpose: str
    allowed_collections: tuple[str, ...]
    max_classification: int
    allowed_models: tuple[str, ...]
    human_review: bool
    retention: str


@dataclass(frozen=True)
class Caller:
    principal: Principal
    policy_configured: bool


class GovernanceService:
    def __init__(self, gate: GovernanceGate) -> None:
        self._gate = gate

    @property
    def audit(self) -> AuditLog:
        return self._gate.audit

    def _reviews(self) -> ReviewStore:
        """The review store; FAILED_PRECONDITION NO_POLICY without a policy file."""
        if self._gate.policy is None or self._gate.reviews is None:
            raise FailedPrecondition(
                "no governance policy is configured (DOCFACTORY_POLICY_FILE)",
                reason="NO_POLICY",
            )
        return self._gate.reviews

    def require_role(self, principal: Principal, role: str) -> None:
        """PERMISSION_DENIED ``{ROLE}_ROLE_REQUIRED`` unless the policy gives the key ``role``
        (FAILED_PRECONDITION NO_POLICY without a policy)."""
        self._reviews()
        assert self._gate.policy is not None
        if not self._gate.policy.current().has_role(principal.key_id, role):
            raise PermissionDenied(
                f"the {role} role is required", reason=f"{role.upper()}_ROLE_REQUIRED"
            )

    # -- policy and caller ---------------------------------------------------------------------

    def policy_for(self, principal: Principal) -> tuple[str, list[UseCaseView]]:
        """The policy version and the use cases open to the caller's tenant."""
        self._reviews()
        assert self._gate.policy is not None
        policy = self._gate.policy.current()
        views = [
            UseCaseView(
                id=uc.id,
                owner=uc.owner,
                purpose=uc.purpose,
                allowed_collections=tuple(sorted(uc.allowed_collections or ())),
                max_classification=int(uc.max_classification),
                allowed_models=tuple(sorted(uc.allowed_models or ())),
                human_review=uc.human_review,
                retention=uc.retention.spec,
            )
            for uc in policy.use_cases.values()
            if principal.tenant in uc.tenants
        ]
        return str(policy.version), views

    def caller(self, principal: Principal) -> Caller:
        return Caller(principal, self._gate.policy is not None)

    # -- human review --------------------------------------------------------------------------

    async def list_reviews(
        self, principal: Principal, *, use_case: str, page_size: int, page_token: str
    ) -> tuple[list[Review], str]:
        """Pending drafts of the caller's tenant, oldest first (keyset on the draft's
        sequence), and the next page's token. Reviewer role."""
        self.require_role(principal, REVIEWER)
        reviews = self._reviews()
        req = page_request(
            page_size, page_token, fingerprint=f"reviews:{use_case}", parse=lambda k: int(k[0])
        )
        rows = await asyncio.to_thread(
            lambda: reviews.list_pending(
                principal.tenant, use_case=use_case or None, limit=req.size + 1, after=req.after
            )
        )
        return next_page(rows, req, lambda r: [str(r.seq)])

    async def get_review(self, principal: Principal, review_id: str) -> Review:
        self.require_role(principal, REVIEWER)
        reviews = self._reviews()
        return await asyncio.to_thread(reviews.get, principal.tenant, review_id)

    async def claim_review(self, principal: Principal, review_id: str, ttl_seconds: int) -> Review:
        """Claim a pending draft for ``ttl_seconds`` (0: the default); audited REVIEW_CLAIM."""
        self.require_role(principal, REVIEWER)
        if ttl_seconds < 0:
            raise InvalidArgument("ttl_seconds must not be negative", reason="INVALID_CLAIM_TTL")
        ttl = dt.timedelta(seconds=ttl_seconds) if ttl_seconds else DEFAULT_CLAIM
        reviews = self._reviews()
        review = await asyncio.to_thread(
            lambda: reviews.claim(
                principal.tenant, review_id, reviewer_key_id=principal.key_id, ttl=ttl
            )
        )
        await asyncio.to_thread(
            lambda: self._gate.record(
                principal,
                action="REVIEW_CLAIM",
                use_case=review.use_case,
                outcome="CLAIMED",
                details={"review_id": review.review_id, "ttl_seconds": int(ttl.total_seconds())},
            )
        )
        return review

    async def decide_review(
        self,
        principal: Principal,
        review_id: str,
        *,
        decision: str,
        amended_text: str = "",
        comment: str = "",
    ) -> Review:
        """APPROVED, AMENDED or REJECTED (four-eyes, first decision wins); audited
        REVIEW_DECISION."""
        self.require_role(principal, REVIEWER)
        if decision not in DECISIONS:
            raise InvalidArgument("decision is required", reason="INVALID_DECISION")
        reviews = self._reviews()
        review = await asyncio.to_thread(
            lambda: reviews.decide(
                principal.tenant,
                review_id,
                reviewer_key_id=principal.key_id,
                decision=decision,
                amended_text=amended_text or None,
                comment=comment,
            )
        )
        await asyncio.to_thread(
            lambda: self._gate.record(
                principal,
                action="REVIEW_DECISION",
                use_case=review.use_case,
                outcome=decision,
                document_ids=[str(c.get("document_id", "")) for c in review.citations],
                model=review.model,
                details={"review_id": review.review_id},
            )
        )
        return review

    async def reviewed_answer(self, principal: Principal, review_id: str) -> ReleasedAnswer:
        """The released text of a decided draft (the requester polls it)."""
        reviews = self._reviews()
        return await asyncio.to_thread(reviews.released_answer, principal.tenant, review_id)

    # -- audit ---------------------------------------------------------------------------------

    async def verify_audit(self, principal: Principal) -> VerifyReport:
        self.require_role(principal, AUDITOR)
        return await asyncio.to_thread(self._gate.audit.verify)

    async def export_audit(
        self, principal: Principal, since: dt.datetime | None
    ) -> AsyncIterator[list[str]]:
        """The tenant's audit records as canonical JSON lines, in batches. Auditor role."""
        self.require_role(principal, AUDITOR)
        records = iter(self._gate.audit.records(since=since, tenant=principal.tenant))

        def batch() -> list[str]:
            return [canonical_json(r.to_json()) for r in itertools.islice(records, EXPORT_BATCH)]

        while lines := await asyncio.to_thread(batch):
            yield lines
