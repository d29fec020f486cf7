"""Review claims: a lock so two reviewers do not work on the same held answer (store + RPC)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from docfactory.app import start_server
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from docfactory.governance.audit import AuditLog
from docfactory.governance.reviews import APPROVED, PENDING_REVIEW, ReviewStore
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from tests.governance.conftest import DbTarget
from tests.governance.test_request_path import write_policy
from tests.helpers import answer, error_reason, md, upload


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def _draft(store: ReviewStore) -> str:
    return store.create_draft(
        tenant="nord", use_case="uc", requester_key_id="app", answer_text="Réponse"
    ).review_id


def test_claim_locks_out_other_reviewers_until_it_expires(db: DbTarget) -> None:
    clock = Clock()
    store = ReviewStore(db.engine, clock=clock)
    rid = _draft(store)
    claimed = store.claim("nord", rid, reviewer_key_id="rev-a", ttl=dt.timedelta(minutes=10))
    assert claimed.claimed_by == "rev-a" and claimed.state == PENDING_REVIEW
    assert claimed.claim_holder(clock.now) == "rev-a"
    # a second reviewer can neither claim nor decide it
    for attempt in (
        lambda: store.claim("nord", rid, reviewer_key_id="rev-b"),
        lambda: store.decide("nord", rid, reviewer_key_id="rev-b", decision=APPROVED),
    ):
        with pytest.raises(FailedPrecondition) as err:
            attempt()
        assert err.value.reason == "REVIEW_CLAIMED"
        assert err.value.metadata["claimed_by"] == "rev-a"
    assert store.get("nord", rid).state == PENDING_REVIEW
    # the holder renews it; once expired another reviewer may take it
    store.claim("nord", rid, reviewer_key_id="rev-a", ttl=dt.timedelta(minutes=1))
    clock.now += dt.timedelta(minutes=2)
    assert store.get("nord", rid).claim_holder(clock.now) is None
    taken = store.claim("nord", rid, reviewer_key_id="rev-b")
    assert taken.claimed_by == "rev-b"
    done = store.decide("nord", rid, reviewer_key_id="rev-b", decision=APPROVED)
    assert done.state == APPROVED and done.claimed_by is None
    with pytest.raises(FailedPrecondition) as err:
        store.claim("nord", rid, reviewer_key_id="rev-a")
    assert err.value.reason == "REVIEW_ALREADY_DECIDED"


def test_claim_rules(db: DbTarget) -> None:
    store = ReviewStore(db.engine)
    rid = _draft(store)
    with pytest.raises(PermissionDenied) as own:
        store.claim("nord", rid, reviewer_key_id="app")
    assert own.value.reason == "SELF_REVIEW_FORBIDDEN"
    for ttl in (dt.timedelta(0), dt.timedelta(days=2)):
        with pytest.raises(InvalidArgument) as bad:
            store.claim("nord", rid, reviewer_key_id="rev-a", ttl=ttl)
        assert bad.value.reason == "INVALID_CLAIM_TTL"
    assert store.get("nord", rid).claimed_by is None


async def test_claim_review_rpc(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml")
    settings = make_settings(policy_file=str(policy))
    running = await start_server(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            doc = tmp_path / "frais.txt"
            doc.write_text("Les frais de repas sont remboursés jusqu'à 45 euros par jour.")
            await upload(ch, doc, key="key-nord")
            _, _, summary = await answer(
                ch, "Quel plafond pour les frais de repas ?", key="key-nord", use_case="uc-reviewed"
            )
            rid = summary.review_id
            stub = gov_grpc.GovernanceServiceStub(ch)
            me = await stub.GetCaller(gov_pb.GetCallerRequest(), metadata=md("rev-nord"))
            assert (me.tenant, me.key_id, me.policy_configured) == ("nord", "reviewer-nord", True)
            assert set(me.roles) == {"reviewer", "auditor"}
            got = await stub.ClaimReview(
                gov_pb.ClaimReviewRequest(review_id=rid, ttl_seconds=600), metadata=md("rev-nord")
            )
            assert got.review.claimed_by_key_id == "reviewer-nord"
            assert got.review.claim_expire_time.seconds > 0
            seen = await stub.GetReview(
                gov_pb.GetReviewRequest(review_id=rid), metadata=md("rev-nord")
            )
            assert seen.review.claimed_by_key_id == "reviewer-nord"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ClaimReview(
                    gov_pb.ClaimReviewRequest(review_id=rid), metadata=md("key-nord")
                )
            assert error_reason(err.value) == "REVIEWER_ROLE_REQUIRED"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetReview(
                    gov_pb.GetReviewRequest(review_id="nope"), metadata=md("rev-nord")
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert seen.review.question == "Quel plafond pour les frais de repas ?"
            # the auditor exports the tenant's records (streamed JSON lines)
            lines = [
                line
                async for batch in stub.ExportAudit(
                    gov_pb.ExportAuditRequest(), metadata=md("rev-nord")
                )
                for line in batch.lines
            ]
            rows = [json.loads(line) for line in lines]
            assert {r["tenant"] for r in rows} == {"nord"}
            assert "REVIEW_CLAIM" in {r["action"] for r in rows}
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.ExportAudit(
                    gov_pb.ExportAuditRequest(), metadata=md("key-nord")
                ):
                    pass
            assert error_reason(err.value) == "AUDITOR_ROLE_REQUIRED"
            # another tenant's reviewer does not see it
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ClaimReview(
                    gov_pb.ClaimReviewRequest(review_id=rid), metadata=md("rev-sud")
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await running.stop(0.5)
    log = AuditLog(make_engine(settings.resolved_database_url))
    claims = [r for r in log.records() if r.action == "REVIEW_CLAIM"]
    assert len(claims) == 1 and claims[0].key_id == "reviewer-nord"
    assert claims[0].details["review_id"] == rid
