"""ListReviews over a real server: keyset pages (a draft decided or added between two pages
neither shifts nor repeats the following ones), tokens bound to their filters, role check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from docfactory.app import start_server
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.governance.reviews import REJECTED, ReviewStore
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from tests.governance.test_request_path import write_policy
from tests.helpers import error_reason, md


def _draft(store: ReviewStore, tenant: str, text: str) -> str:
    return store.create_draft(
        tenant=tenant,
        use_case="uc-reviewed",
        requester_key_id=f"app-{tenant}",
        answer_text=text,
    ).review_id


async def test_list_reviews_pages_are_stable(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(policy_file=str(write_policy(tmp_path / "policy.yaml")))
    running = await start_server(settings, port=0)
    try:
        store = ReviewStore(make_engine(settings.resolved_database_url), create_tables=False)
        ids = [_draft(store, "nord", f"brouillon {i}") for i in range(5)]
        _draft(store, "sud", "autre locataire")
        async with grpc.aio.insecure_channel(running.address) as ch:
            gov = gov_grpc.GovernanceServiceStub(ch)
            first = await gov.ListReviews(
                gov_pb.ListReviewsRequest(page_size=2), metadata=md("rev-nord")
            )
            assert [r.review_id for r in first.reviews] == ids[:2] and first.next_page_token
            # Between two pages: a draft of the first page is decided, a new one arrives.
            store.decide("nord", ids[0], reviewer_key_id="reviewer-nord", decision=REJECTED)
            extra = _draft(store, "nord", "arrivé pendant la lecture")
            seen = [r.review_id for r in first.reviews]
            token = first.next_page_token
            while token:
                page = await gov.ListReviews(
                    gov_pb.ListReviewsRequest(page_size=2, page_token=token),
                    metadata=md("rev-nord"),
                )
                seen += [r.review_id for r in page.reviews]
                token = page.next_page_token
            assert seen == [*ids, extra]  # none skipped, none repeated
            bad = [
                (
                    gov_pb.ListReviewsRequest(page_token=first.next_page_token, use_case="x"),
                    "rev-nord",
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_PAGE_TOKEN",
                ),
                (
                    gov_pb.ListReviewsRequest(page_token="%%%"),
                    "rev-nord",
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_PAGE_TOKEN",
                ),
                (
                    gov_pb.ListReviewsRequest(page_size=-1),
                    "rev-nord",
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_PAGE_SIZE",
                ),
                (
                    gov_pb.ListReviewsRequest(),
                    "key-nord",
                    grpc.StatusCode.PERMISSION_DENIED,
                    "REVIEWER_ROLE_REQUIRED",
                ),
            ]
            for req, key, code, reason in bad:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await gov.ListReviews(req, metadata=md(key))
                assert err.value.code() == code, reason
                assert error_reason(err.value) == reason
            other = await gov.ListReviews(gov_pb.ListReviewsRequest(), metadata=md("rev-sud"))
            assert len(other.reviews) == 1
    finally:
        await running.stop(0.5)
