"""Human review: drafts, decisions, release rules, pagination, tenant isolation."""

from __future__ import annotations

import pytest

from docfactory.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from docfactory.governance.reviews import (
    AMENDED,
    APPROVED,
    PENDING_REVIEW,
    REJECTED,
    ReviewStore,
)
from tests.governance.conftest import DbTarget

CITATIONS = [{"document_id": "doc-1", "page": 2, "chunk_id": "c-7", "score": 0.83}]


def draft(store: ReviewStore, tenant: str = "nord", text: str = "Réponse : 5 jours.") -> str:
    review = store.create_draft(
        tenant=tenant,
        use_case="credit-faq",
        requester_key_id="app-credit",
        answer_text=text,
        citations=CITATIONS,
        model="mistral-small",
        metadata={"audit_seq": 42},
    )
    assert review.state == PENDING_REVIEW
    return review.review_id


def test_review_flow(db: DbTarget) -> None:
    store = ReviewStore(db.engine)
    approved, amended, rejected = draft(store), draft(store), draft(store)
    got = store.get("nord", approved)
    assert got.answer_text == "Réponse : 5 jours." and got.citations[0]["page"] == 2
    assert got.metadata == {"audit_seq": 42} and got.model == "mistral-small"

    with pytest.raises(FailedPrecondition) as pending:
        store.released_answer("nord", approved)
    assert pending.value.reason == "REVIEW_PENDING"

    done = store.decide("nord", approved, reviewer_key_id="reviewer-1", decision=APPROVED)
    assert done.state == APPROVED and done.reviewer_key_id == "reviewer-1" and done.decided_at
    released = store.released_answer("nord", approved)
    assert released.text == "Réponse : 5 jours." and released.state == APPROVED
    assert released.citations[0]["document_id"] == "doc-1"

    store.decide(
        "nord",
        amended,
        reviewer_key_id="reviewer-1",
        decision=AMENDED,
        amended_text="Réponse corrigée : 5 jours ouvrables.",
        comment="précision",
    )
    assert store.released_answer("nord", amended).text == "Réponse corrigée : 5 jours ouvrables."

    store.decide("nord", rejected, reviewer_key_id="reviewer-1", decision=REJECTED)
    with pytest.raises(FailedPrecondition) as rej:
        store.released_answer("nord", rejected)
    assert rej.value.reason == "REVIEW_REJECTED"

    for review_id in (approved, amended, rejected):
        with pytest.raises(FailedPrecondition) as again:
            store.decide("nord", review_id, reviewer_key_id="reviewer-2", decision=APPROVED)
        assert again.value.reason == "REVIEW_ALREADY_DECIDED"
    assert store.get("nord", rejected).state == REJECTED  # unchanged by the refused decision


def test_decision_validation(db: DbTarget) -> None:
    store = ReviewStore(db.engine)
    review_id = draft(store)
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"decision": "MAYBE"}, InvalidArgument, "INVALID_DECISION"),
        ({"decision": AMENDED}, InvalidArgument, "AMENDED_TEXT_REQUIRED"),
        ({"decision": AMENDED, "amended_text": "  "}, InvalidArgument, "AMENDED_TEXT_REQUIRED"),
        ({"decision": APPROVED, "amended_text": "x"}, InvalidArgument, "AMENDED_TEXT_UNEXPECTED"),
    ]
    for kwargs, exc, reason in cases:
        with pytest.raises(exc) as info:
            store.decide("nord", review_id, reviewer_key_id="reviewer-1", **kwargs)  # type: ignore[arg-type]
        assert getattr(info.value, "reason", None) == reason
    with pytest.raises(PermissionDenied) as own:
        store.decide("nord", review_id, reviewer_key_id="app-credit", decision=APPROVED)
    assert own.value.reason == "SELF_REVIEW_FORBIDDEN"
    assert store.get("nord", review_id).state == PENDING_REVIEW


def test_tenant_isolation(db: DbTarget) -> None:
    store = ReviewStore(db.engine)
    review_id = draft(store, tenant="nord")
    with pytest.raises(NotFound) as info:
        store.get("sud", review_id)
    assert info.value.reason == "REVIEW_NOT_FOUND"
    with pytest.raises(NotFound):
        store.decide("sud", review_id, reviewer_key_id="r-sud", decision=APPROVED)
    with pytest.raises(NotFound):
        store.released_answer("sud", review_id)
    assert store.list_pending("sud") == []


def test_list_pending_is_keyset_paginated(db: DbTarget) -> None:
    store = ReviewStore(db.engine)
    ids = [draft(store, text=f"r{i}") for i in range(7)]
    draft(store, tenant="sud")
    store.decide("nord", ids[2], reviewer_key_id="reviewer-1", decision=REJECTED)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = store.list_pending("nord", limit=2, after=after)
        if not page:
            break
        pages += 1
        seen += [r.review_id for r in page]
        assert all(r.state == PENDING_REVIEW and r.tenant == "nord" for r in page)
        after = page[-1].seq
    assert seen == [i for i in ids if i != ids[2]]
    assert pages == 3
    assert store.list_pending("nord", use_case="other") == []


def test_concurrent_decisions_one_wins(db: DbTarget) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = ReviewStore(db.engine)
    review_id = draft(store)

    def decide(i: int) -> str:
        try:
            store.decide("nord", review_id, reviewer_key_id=f"reviewer-{i}", decision=APPROVED)
            return "won"
        except FailedPrecondition as exc:
            return str(exc.reason)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(decide, range(4)))
    assert sorted(outcomes) == ["REVIEW_ALREADY_DECIDED"] * 3 + ["won"]
