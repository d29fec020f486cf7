"""A dossier run end to end over real gRPC, real SQLite and a real workflow worker process:
approve (with four-eyes), reject, amend, governance refusals, a missing document."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from docfactory.workflows.v1 import workflows_service_pb2 as pb
from tests.workflows import dossiers
from tests.workflows.conftest import create_dossier, decide, md, start_run, stub, wait_state

WAITING = {pb.RUN_STATE_AWAITING_SIGNOFF}
ENDED = {
    pb.RUN_STATE_COMPLETED,
    pb.RUN_STATE_REJECTED,
    pb.RUN_STATE_INCOMPLETE,
    pb.RUN_STATE_FAILED,
    pb.RUN_STATE_CANCELLED,
}


def _fields(run: pb.Run) -> dict[str, pb.Field]:
    return {f"{d.type}.{f.name}": f for d in run.result.documents for f in d.fields}


@pytest.mark.slow
async def test_governed_run_approve_amend_reject(wf_env, cleanup_servers, tmp_path: Path) -> None:
    env = wf_env(policy=True)
    cleanup_servers.append(env)
    server = await env.start_server()
    env.start_worker()
    async with grpc.aio.insecure_channel(server.address) as ch:
        # -- above the four-eyes threshold (150 000 EUR): two distinct approvals ------------
        files = dossiers.financement(tmp_path / "a", amount="180 000,00 €")
        dossier = await create_dossier(ch, files, "key-analyst", use_case="credit-pro")
        assert len(dossier.documents) == 5
        run = await start_run(ch, dossier, "key-analyst")
        assert run.state == pb.RUN_STATE_QUEUED  # long-running: returned at once
        waiting = await wait_state(ch, run.name, "key-rev1", WAITING)
        assert waiting.approvals_required == 2
        fields = _fields(waiting)
        assert fields["demande.siren"].value == dossiers.SIREN
        ev = fields["demande.siren"].evidence
        assert ev.quote == dossiers.SIREN and ev.document_id and ev.end > ev.start
        checks = {c.rule: c for c in waiting.result.checks}
        assert checks["siren-demande-kbis"].outcome == pb.CHECK_OUTCOME_PASSED
        assert checks["iban-demande-rib"].outcome == pb.CHECK_OUTCOME_PASSED
        # the budget total (120 000) differs from the amount asked (180 000): a warning
        assert checks["montant-sous-total-projet"].outcome == pb.CHECK_OUTCOME_FAILED
        assert "[1]" in waiting.result.note and not waiting.result.released
        # nothing released to the requester before sign-off
        mine = await stub(ch).GetRun(pb.GetRunRequest(name=run.name), metadata=md("key-analyst"))
        assert not mine.run.HasField("result")
        # the analyst holds no reviewer role
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await decide(ch, run, "key-analyst", pb.DECISION_KIND_APPROVE)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "SIGNOFF_ROLE_REQUIRED" in str(denied.value.trailing_metadata())
        pending = await stub(ch).ListPendingDecisions(
            pb.ListPendingDecisionsRequest(), metadata=md("key-rev1")
        )
        assert [r.name for r in pending.runs] == [run.name]
        first = await decide(ch, run, "key-rev1", pb.DECISION_KIND_APPROVE, "ok")
        assert first.run.state == pb.RUN_STATE_AWAITING_SIGNOFF
        # four-eyes: the same reviewer twice is refused
        with pytest.raises(grpc.aio.AioRpcError) as twice:
            await decide(ch, run, "key-rev1", pb.DECISION_KIND_APPROVE, "again")
        assert twice.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "SAME_REVIEWER" in str(twice.value.trailing_metadata())
        await decide(ch, run, "key-rev2", pb.DECISION_KIND_APPROVE, "vu")
        done = await wait_state(ch, run.name, "key-analyst", ENDED)
        assert done.state == pb.RUN_STATE_COMPLETED
        assert done.result.released
        assert [(d.reviewer, d.kind) for d in done.result.decisions] == [
            ("reviewer-1", pb.DECISION_KIND_APPROVE),
            ("reviewer-2", pb.DECISION_KIND_APPROVE),
        ]

        # -- amend then approve (under the threshold once amended) ----------------------------
        files = dossiers.financement(tmp_path / "b", amount="180 000,00 €")
        dossier = await create_dossier(ch, files, "key-analyst", use_case="credit-pro")
        run = await start_run(ch, dossier, "key-analyst")
        await wait_state(ch, run.name, "key-rev1", WAITING)
        amended = await decide(
            ch,
            run,
            "key-rev1",
            pb.DECISION_KIND_AMEND,
            "montant corrigé",
            **{"demande.montant_demande": "120 000 €"},
        )
        assert amended.decision.amendments == {"demande.montant_demande": "120000.00"}
        # the run re-checks; 120 000 <= 150 000, but an amendment never lowers the approvals
        # the run started with (four-eyes cannot be amended away)
        for _ in range(100):
            got = (
                await stub(ch).GetRun(pb.GetRunRequest(name=run.name), metadata=md("key-rev1"))
            ).run
            f = _fields(got).get("demande.montant_demande")
            checks = {c.rule: c for c in got.result.checks}
            passed = checks["montant-sous-total-projet"].outcome == pb.CHECK_OUTCOME_PASSED
            if f is not None and f.status == "AMENDED" and passed:
                break
            import asyncio

            await asyncio.sleep(0.2)
        assert f is not None and f.value == "120000.00" and f.amended_by == "reviewer-1"
        assert passed and got.approvals_required == 2
        await decide(ch, run, "key-rev2", pb.DECISION_KIND_APPROVE, "ok")
        await asyncio.sleep(1.0)
        still = (
            await stub(ch).GetRun(pb.GetRunRequest(name=run.name), metadata=md("key-rev1"))
        ).run
        assert still.state == pb.RUN_STATE_AWAITING_SIGNOFF  # one approval of two
        await decide(ch, run, "key-rev1", pb.DECISION_KIND_APPROVE, "ok")
        done = await wait_state(ch, run.name, "key-analyst", ENDED)
        assert done.state == pb.RUN_STATE_COMPLETED
        f = _fields(done)["demande.montant_demande"]
        assert (f.value, f.status, f.amended_by) == ("120000.00", "AMENDED", "reviewer-1")

        # -- reject: nothing released ---------------------------------------------------------
        files = dossiers.financement(tmp_path / "c", kbis_siren=dossiers.OTHER_SIREN)
        dossier = await create_dossier(ch, files, "key-analyst", use_case="credit-pro")
        run = await start_run(ch, dossier, "key-analyst")
        waiting = await wait_state(ch, run.name, "key-rev1", WAITING)
        checks = {c.rule: c for c in waiting.result.checks}
        assert checks["siren-demande-kbis"].outcome == pb.CHECK_OUTCOME_FAILED
        with pytest.raises(grpc.aio.AioRpcError) as no_comment:
            await decide(ch, run, "key-rev1", pb.DECISION_KIND_REJECT)
        assert no_comment.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await decide(ch, run, "key-rev1", pb.DECISION_KIND_REJECT, "SIREN incohérent")
        done = await wait_state(ch, run.name, "key-analyst", ENDED)
        assert done.state == pb.RUN_STATE_REJECTED
        assert not done.HasField("result")
        rev_view = await wait_state(ch, run.name, "key-rev1", ENDED)
        assert not rev_view.HasField("result")  # not even to reviewers once rejected

        # -- a required document missing: the run stops naming it ----------------------------
        files = dossiers.financement(tmp_path / "e", with_rib=False)
        incomplete = await create_dossier(ch, files, "key-analyst", use_case="credit-pro")
        run = await start_run(ch, incomplete, "key-analyst")
        stopped = await wait_state(ch, run.name, "key-analyst", ENDED)
        assert stopped.state == pb.RUN_STATE_INCOMPLETE
        assert list(stopped.missing_documents) == ["rib"]
        assert stopped.error_reason == "MISSING_DOCUMENTS"
        assert "Relevé d'identité bancaire" in stopped.error_message
        # the analyst who asked sees what the run found (not released: nothing was decided)
        assert stopped.HasField("result") and stopped.result.documents
        listed = await stub(ch).ListDossiers(
            pb.ListDossiersRequest(state=pb.RUN_STATE_INCOMPLETE, flow="financement"),
            metadata=md("key-analyst"),
        )
        assert [d.name for d in listed.dossiers] == [incomplete.name]
        assert [r.name for r in listed.dossiers[0].runs] == [run.name]
        assert listed.dossiers[0].latest_run == run.name
        assert listed.dossiers[0].submitted_by == "analyst"

        # -- cancel: the run ends CANCELLED, a second cancel is refused -----------------------
        run = await start_run(ch, incomplete, "key-analyst")
        cancelled = await stub(ch).CancelRun(
            pb.CancelRunRequest(name=run.name), metadata=md("key-analyst")
        )
        assert cancelled.run.state == pb.RUN_STATE_CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub(ch).CancelRun(pb.CancelRunRequest(name=run.name), metadata=md("key-analyst"))
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # -- governance -----------------------------------------------------------------------
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await stub(ch).GetDossier(
                pb.GetDossierRequest(name=dossier.name), metadata=md("key-globex")
            )
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as other_run:
            await stub(ch).GetRun(pb.GetRunRequest(name=run.name), metadata=md("key-globex"))
        assert other_run.value.code() == grpc.StatusCode.NOT_FOUND
        faq = await create_dossier(ch, files[:1], "key-analyst", use_case="faq")
        with pytest.raises(grpc.aio.AioRpcError) as flow_denied:
            await start_run(ch, faq, "key-analyst")
        assert flow_denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "FLOW_NOT_ALLOWED" in str(flow_denied.value.trailing_metadata())
        assert "not allowed for use case 'faq'" in (flow_denied.value.details() or "")

    # every refusal is in the audit chain
    from docfactory.core.db import make_engine
    from docfactory.governance.audit import AuditLog

    engine = make_engine(env.settings.resolved_database_url)
    records = list(AuditLog(engine).records())
    denied_reasons = {r.outcome for r in records if r.action == "DENIED"}
    assert {
        "SIGNOFF_ROLE_REQUIRED",
        "SAME_REVIEWER",
        "DOSSIER_NOT_FOUND",
        "RUN_NOT_FOUND",
        "FLOW_NOT_ALLOWED",
    } <= denied_reasons
    actions = {r.action for r in records}
    assert {
        "DOSSIER_CLASSIFY",
        "DOSSIER_EXTRACT",
        "DOSSIER_CHECK",
        "DOSSIER_DECISION",
        "DOSSIER_RELEASE",
        "DOSSIER_REJECT",
    } <= actions
    engine.dispose()
