"""Feedback over real gRPC: stored, linked to the answer's audit record, audited, counted in
Prometheus with the right labels; GetUsage over the same records."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest

from docfactory.app import RunningServer
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from docfactory.measurement.feedback import FeedbackStore
from docfactory.measurement.v1 import measurement_service_pb2 as pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as pb_grpc
from tests.helpers import answer, error_reason, md, search, upload
from tests.measurement.conftest import scrape, value

TEXT = (
    "Procédure de rupture conventionnelle : l'employeur et le salarié conviennent d'un "
    "entretien préalable, puis signent une convention. Le délai de rétractation est de quinze "
    "jours calendaires. La demande d'homologation est adressée à la DREETS."
)


async def _setup(ch: grpc.aio.Channel, tmp_path: Path) -> None:
    f = tmp_path / "rupture.txt"
    f.write_text(TEXT, encoding="utf-8")
    for key in ("key-nord", "key-sud"):
        await upload(ch, f, key=key)


async def test_feedback_linked_stored_audited_and_counted(
    meas_server: RunningServer, tmp_path: Path
) -> None:
    assert meas_server.metrics_port
    async with grpc.aio.insecure_channel(meas_server.address) as ch:
        await _setup(ch, tmp_path)
        stub = pb_grpc.MeasurementServiceStub(ch)
        before = scrape(meas_server.metrics_port)

        # 1. no reference: the latest answer of the caller's key
        _, cits, summary = await answer(
            ch, "Quel est le délai de rétractation ?", key="key-nord", use_case="uc-rh"
        )
        assert cits and not summary.review_id
        r1 = await stub.SubmitFeedback(
            pb.SubmitFeedbackRequest(
                verdict=pb.VERDICT_USEFUL,
                rating=5,
                comment="parfait, merci",
                time_saved_minutes=12.5,
                usage=pb.ANSWER_USAGE_USED_AS_IS,
            ),
            metadata=md("key-nord"),
        )
        assert r1.link_method == pb.LINK_METHOD_LATEST_ANSWER and r1.use_case == "uc-rh"
        # The summary names its answer: the audit record the feedback was linked to.
        assert summary.answer_id > 0 and r1.answer_audit_seq == summary.answer_id

        # 2. explicit audit seq, by another key of the same tenant
        await search(ch, "homologation", key="key-nord2", use_case="uc-rh")
        r2 = await stub.SubmitFeedback(
            pb.SubmitFeedbackRequest(
                answer_audit_seq=summary.answer_id,
                verdict=pb.VERDICT_NOT_USEFUL,
                rating=2,
                time_saved_minutes=0,
                usage=pb.ANSWER_USAGE_EDITED,
            ),
            metadata=md("key-nord2"),
        )
        assert r2.link_method == pb.LINK_METHOD_AUDIT_SEQ
        assert r2.answer_audit_seq == r1.answer_audit_seq

        # 3. a held answer, by review id
        _, _, held = await answer(
            ch, "Qui reçoit la demande d'homologation ?", key="key-nord", use_case="uc-juridique"
        )
        assert held.pending_review and held.review_id
        r3 = await stub.SubmitFeedback(
            pb.SubmitFeedbackRequest(
                review_id=held.review_id,
                rating=4,
                time_saved_minutes=30,
                usage=pb.ANSWER_USAGE_EDITED,
            ),
            metadata=md("key-nord"),
        )
        assert r3.link_method == pb.LINK_METHOD_REVIEW_ID and r3.use_case == "uc-juridique"
        gov = gov_grpc.GovernanceServiceStub(ch)
        await gov.DecideReview(
            gov_pb.DecideReviewRequest(
                review_id=held.review_id, decision=gov_pb.REVIEW_DECISION_APPROVE
            ),
            metadata=md("rev-nord"),
        )

        # refusals: other tenant's answer, duplicate, bad rating, no recent answer
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitFeedback(
                pb.SubmitFeedbackRequest(answer_audit_seq=r1.answer_audit_seq, rating=3),
                metadata=md("key-sud"),
            )
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(e.value) == "ANSWER_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitFeedback(
                pb.SubmitFeedbackRequest(answer_audit_seq=r1.answer_audit_seq, rating=3),
                metadata=md("key-nord"),
            )
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitFeedback(pb.SubmitFeedbackRequest(rating=9), metadata=md("key-sud"))
        assert error_reason(e.value) == "INVALID_RATING"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitFeedback(pb.SubmitFeedbackRequest(rating=3), metadata=md("key-sud"))
        assert error_reason(e.value) == "ANSWER_NOT_FOUND"

        after = scrape(meas_server.metrics_port)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("docfactory_feedback_total", tenant="nord", use_case="uc-rh", rating="5") == 1
        assert delta("docfactory_feedback_total", tenant="nord", use_case="uc-rh", rating="2") == 1
        assert (
            delta("docfactory_feedback_total", tenant="nord", use_case="uc-juridique", rating="4")
            == 1
        )
        assert delta("docfactory_feedback_total", tenant="sud") == 0
        assert delta("docfactory_time_saved_minutes_total", tenant="nord", use_case="uc-rh") == 12.5
        assert (
            delta("docfactory_time_saved_minutes_total", tenant="nord", use_case="uc-juridique")
            == 30
        )
        assert delta("docfactory_feedback_verdicts_total", tenant="nord", verdict="useful") == 1
        assert (
            delta("docfactory_answer_usage_total", tenant="nord", use_case="uc-rh", usage="edited")
            == 1
        )
        m = "docfactory_rpc_requests_total"
        svc = "docfactory.measurement.v1.MeasurementService"
        assert delta(m, service=svc, method="SubmitFeedback", code="OK", tenant="nord") == 3
        assert delta(m, service=svc, method="SubmitFeedback", code="NOT_FOUND", tenant="sud") == 2
        assert delta(m, method="Answer", code="OK", tenant="nord") == 2
        assert delta(m, method="Search", code="OK", tenant="nord") == 1

        # GetUsage: the caller's tenant only, one record per use case
        usage = await stub.GetUsage(pb.GetUsageRequest(), metadata=md("own-nord"))
        by_uc = {r.use_case: r for r in usage.records}
        assert set(by_uc) == {"uc-rh", "uc-juridique"}
        assert {r.tenant for r in usage.records} == {"nord"}
        rh = by_uc["uc-rh"]
        assert (rh.questions, rh.searches, rh.feedback, rh.answers_with_feedback) == (1, 1, 2, 1)
        assert rh.active_users == 2 and rh.mean_rating == 3.5 and rh.useful_rate == 0.5
        assert rh.time_saved_minutes == 12.5 and rh.citation_rate == 1.0
        assert (rh.used_as_is, rh.edited, rh.discarded) == (1, 1, 0)
        jur = by_uc["uc-juridique"]
        assert jur.questions == 1 and jur.review_decisions == 1 and jur.review_approval_rate == 1.0
        today = dt.datetime.now(dt.UTC).date().isoformat()
        assert usage.to_date == today
        assert [d.questions for d in rh.daily if d.date == today] == [1]
        sud = await stub.GetUsage(pb.GetUsageRequest(use_case="uc-rh"), metadata=md("own-sud"))
        assert [r.tenant for r in sud.records] == ["sud"]
        assert sud.records[0].questions == 0 and sud.records[0].feedback == 0

    # stored and linked, in SQL and in the audit chain
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'docfactory.db'}")
    try:
        audit = AuditLog(engine)
        recs = {r.seq: r for r in audit.records()}
        answer_rec = recs[r1.answer_audit_seq]
        assert answer_rec.action == "ANSWER" and answer_rec.key_id == "app-nord"
        assert recs[r3.answer_audit_seq].outcome == "PENDING_REVIEW"
        store = FeedbackStore(engine)
        fb = store.get(r1.feedback_id)
        assert fb is not None
        assert (fb.tenant, fb.key_id, fb.use_case) == ("nord", "app-nord", "uc-rh")
        assert (fb.rating, fb.useful, fb.usage, fb.time_saved_minutes) == (
            5,
            True,
            "USED_AS_IS",
            12.5,
        )
        assert fb.comment == "parfait, merci" and fb.answer_audit_seq == answer_rec.seq
        fb_rec = recs[r1.feedback_audit_seq]
        assert fb_rec.action == "FEEDBACK" and fb_rec.key_id == "app-nord"
        assert fb_rec.details["answer_seq"] == answer_rec.seq
        assert fb_rec.details["feedback_id"] == r1.feedback_id
        assert "comment" not in fb_rec.details  # free text stays out of the chain
        assert fb_rec.document_ids == answer_rec.document_ids
        fb2 = store.get(r2.feedback_id)
        assert fb2 is not None and fb2.key_id == "app2-nord" and fb2.feedback_audit_seq
        assert audit.verify().ok
    finally:
        engine.dispose()
