"""The run steps as domain code on a real SQLite database and the real typed extractors:
classification, extraction with evidence, checks, note, the sign-off bookkeeping (deadline,
escalation, amendments voiding earlier approvals, four-eyes count), without DBOS."""

from __future__ import annotations

from pathlib import Path

from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.workflows.extract import typed_extractor
from docfactory.workflows.flows import FlowRegistry, shipped_flows_dir
from docfactory.workflows.repo import (
    AMEND,
    APPROVE,
    AWAITING_SIGNOFF,
    COMPLETED,
    ESCALATED,
    DocRow,
    WorkflowRepository,
)
from docfactory.workflows.steps import AMENDED, APPROVED, WAIT, RunSteps
from tests.workflows import dossiers


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_steps_signoff_bookkeeping(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    repo = WorkflowRepository(engine)
    flow = FlowRegistry(shipped_flows_dir()).get("financement")
    assert flow is not None
    files = dossiers.financement(tmp_path / "d", amount="200 000,00 €")
    docs = [DocRow(f"doc-{p.stem}", p.name, 1, [p.read_text()]) for p in files]
    dossier = repo.create_dossier(
        tenant="acme", display_name="x", use_case="", classification=2, metadata={}, docs=docs
    )
    run = repo.create_run(
        tenant="acme",
        dossier_id=dossier.dossier_id,
        flow_ref=flow.ref,
        flow_json=flow.model_dump_json(by_alias=True),
        use_case="",
        requester="analyst",
        signoff_role="reviewer",
    )
    clock = Clock()
    steps = RunSteps(repo, typed_extractor(), audit=AuditLog(engine), clock=clock)
    rid = run.run_id
    assert steps.start(rid)
    types = steps.classify(rid)
    assert sorted(types.values()) == sorted(
        ["demande", "kbis", "rib", "budget", "etats_financiers"]
    )
    assert steps.required(rid, types) == []
    for doc_id in types:
        steps.extract(rid, doc_id)
    steps.check(rid, 0)
    steps.retrieve(rid)
    steps.draft(rid, 0)
    got = repo.get_run(rid)
    assert got is not None and got.approvals_required == 2  # 200 000 > 150 000
    demande = next(d for d in got.result["documents"] if d["type"] == "demande")
    siren = next(f for f in demande["fields"] if f["name"] == "siren")
    page = docs[0].pages[0]
    ev = siren["evidence"]
    assert page[ev["start"] : ev["end"]] == ev["quote"] == dossiers.SIREN

    # sign-off: deadline from the flow, escalation when it passes
    left = steps.await_signoff(rid)
    assert abs(left - flow.signoff.deadline_hours * 3600) < 5
    assert repo.get_run(rid).state == AWAITING_SIGNOFF  # type: ignore[union-attr]
    clock.now += flow.signoff.deadline_hours * 3600 + 1
    assert steps.await_signoff(rid) == 1.0  # overdue: wake at once
    steps.escalate(rid)
    assert repo.get_run(rid).state == ESCALATED  # type: ignore[union-attr]

    repo.add_decision(
        run_id=rid, tenant="acme", kind=APPROVE, reviewer="r1", comment="", amendments={}
    )
    assert steps.evaluate_decisions(rid) == WAIT  # four-eyes: one approval of two
    # an amendment voids the approval given before it, and re-checks
    repo.add_decision(
        run_id=rid,
        tenant="acme",
        kind=AMEND,
        reviewer="r2",
        comment="",
        amendments={"demande.montant_demande": "120000.00"},
    )
    assert steps.evaluate_decisions(rid) == AMENDED
    steps.check(rid, 1)
    steps.draft(rid, 1)
    got = repo.get_run(rid)
    # 120 000 <= 150 000, yet an amendment never lowers the approvals the run started with
    assert got is not None and got.approvals_required == 2
    assert "corrigé par r2" in got.result["note"]
    assert steps.evaluate_decisions(rid) == WAIT  # r1's approval predates the amendment
    repo.add_decision(
        run_id=rid, tenant="acme", kind=APPROVE, reviewer="r1", comment="", amendments={}
    )
    assert steps.evaluate_decisions(rid) == WAIT  # one distinct approval after the amendment
    repo.add_decision(
        run_id=rid, tenant="acme", kind=APPROVE, reviewer="r3", comment="", amendments={}
    )
    assert steps.evaluate_decisions(rid) == APPROVED
    steps.release(rid)
    done = repo.get_run(rid)
    assert done is not None and done.state == COMPLETED and done.result["released"]
    counts = repo.step_counts(rid)
    assert counts["check:1"][:2] == (1, 1) and counts["draft:1"][:2] == (1, 1)
    stats = repo.stats("acme")
    assert stats["fields_amended"] == 1 and stats["approval_rate"] == 1.0
    assert set(stats["step_ms"]) == {
        "classify",
        "required",
        "extract",
        "check",
        "retrieve",
        "draft",
    }
    engine.dispose()


def test_pages_go_to_the_model_only_where_the_use_case_allows_it(tmp_path: Path) -> None:
    """A use case with a `pii` policy, or one whose `allowed_models` excludes the extractor's
    model, never sends the dossier's pages to the model (a real OpenAI-compatible stand-in on
    a socket receives nothing): the typed extractors run instead, and the audit says why."""
    import functools

    import yaml

    from docfactory.governance.contracts import model_refusal
    from docfactory.workflows.extract import vllm_extractor
    from tests.workflows.conftest import write_policy
    from tests.workflows.test_extract_vllm import StandIn

    path = write_policy(tmp_path / "policy.yaml")
    doc = yaml.safe_load(path.read_text())
    base = doc["use_cases"][0]
    doc["use_cases"] += [
        {**base, "id": "credit-pii", "pii": "mask_in_answers"},
        {**base, "id": "credit-other-model", "allowed_models": ["another-model"]},
    ]
    path.write_text(yaml.safe_dump(doc))

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    repo = WorkflowRepository(engine)
    flow = FlowRegistry(shipped_flows_dir()).get("financement")
    assert flow is not None
    files = dossiers.financement(tmp_path / "d")
    docs = [DocRow(f"doc-{p.stem}", p.name, 1, [p.read_text()]) for p in files]
    dossier = repo.create_dossier(
        tenant="acme", display_name="x", use_case="", classification=2, metadata={}, docs=docs
    )
    audit = AuditLog(engine)
    with StandIn(answers=[]) as model:
        steps = RunSteps(
            repo,
            vllm_extractor(model.url, "mistral-small"),
            audit=audit,
            extractor_name="mistral-small",
            model_refusal=functools.partial(model_refusal, path),
            local_extractor=typed_extractor(),
        )
        for use_case, why in (
            ("credit-pii", "PII_POLICY"),
            ("credit-other-model", "MODEL_NOT_ALLOWED"),
        ):
            run = repo.create_run(
                tenant="acme",
                dossier_id=dossier.dossier_id,
                flow_ref=flow.ref,
                flow_json=flow.model_dump_json(by_alias=True),
                use_case=use_case,
                requester="analyst",
                signoff_role="reviewer",
            )
            assert steps.start(run.run_id)
            types = steps.classify(run.run_id)
            assert sorted(types.values()) == sorted(
                ["demande", "kbis", "rib", "budget", "etats_financiers"]
            )
            for doc_id in types:
                steps.extract(run.run_id, doc_id)
            got = repo.get_run(run.run_id)
            assert got is not None
            demande = next(d for d in got.result["documents"] if d["type"] == "demande")
            assert any(f["status"] == "FOUND" for f in demande["fields"])
            records = [
                r
                for r in audit.records(tenant="acme")
                if r.details.get("run_id") == run.run_id
                and r.action in ("DOSSIER_CLASSIFY", "DOSSIER_EXTRACT")
            ]
            assert len(records) == 1 + len(types)
            assert {(r.model, r.details.get("model_not_used")) for r in records} == {("typed", why)}
        assert model.requests == []  # no page left for the model
        # The use case that allows the model gets it.
        allowed = repo.create_run(
            tenant="acme",
            dossier_id=dossier.dossier_id,
            flow_ref=flow.ref,
            flow_json=flow.model_dump_json(by_alias=True),
            use_case="credit-pro",
            requester="analyst",
            signoff_role="reviewer",
        )
        assert steps.extractor_for(allowed)[1:] == ("mistral-small", "")
