"""Ask in the console (streamed answer, citations, held answers), feedback where people read
(console answer, signed dossier run, ``docfactory ask`` prompt), and the usage page's dossier
section against the database -- a real server, real workers, Debian chromium."""

from __future__ import annotations

import argparse
import asyncio
import builtins
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from docfactory.core.db import make_engine
from docfactory.measurement.v1 import measurement_service_pb2 as meas_pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as meas_grpc
from tests.console.conftest import Stack, md, sign_in

pytestmark = pytest.mark.slow

FAQ = (
    "Télétravail. Chaque salarié peut télétravailler jusqu'à deux jours par semaine après "
    "accord de son responsable. L'indemnité de télétravail est de 2,50 euros par jour."
)
QUESTION = "Combien de jours de télétravail par semaine ?"


@pytest.fixture(scope="module", autouse=True)
def corpus(stack: Stack) -> Iterator[None]:
    stack.upload("teletravail.txt", FAQ)
    yield


def _usage(stack: Stack, use_case: str = "") -> meas_pb.GetUsageResponse:
    with stack.channel() as ch:
        resp: meas_pb.GetUsageResponse = meas_grpc.MeasurementServiceStub(ch).GetUsage(
            meas_pb.GetUsageRequest(use_case=use_case), metadata=md("key-owner"), timeout=60
        )
    return resp


def _report(stack: Stack, tmp: Path) -> dict[str, Any]:
    from docfactory.measurement.cli import _run

    out = tmp / "report.json"
    ns = argparse.Namespace(
        from_date="", to_date="", tenant="nord", use_case=None, out=None,
        json_out=str(out), eval=None,
    )  # fmt: skip
    assert _run(ns, stack.settings) == 0
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def _feedback_rows(stack: Stack) -> list[Any]:
    engine = make_engine(stack.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT * FROM answer_feedback ORDER BY time")))
    finally:
        engine.dispose()


def test_ask_streams_a_cited_answer_and_takes_feedback(
    stack: Stack, new_page: Any, tmp_path: Path
) -> None:
    page = new_page()
    sign_in(page, stack.url, "key-requester")  # a person without any role may ask
    page.goto(f"{stack.url}/ask")
    options = page.locator("#use_case option").all_inner_texts()
    assert any(o.startswith("uc-open") for o in options), options
    page.get_by_label("Votre question").fill(QUESTION)
    page.locator("#use_case").select_option("uc-open")
    with page.expect_response(lambda r: r.url.endswith("/ask")) as answered:
        page.get_by_role("button", name="Demander").click()
    response = answered.value
    assert response.status == 200
    assert response.headers.get("x-accel-buffering") == "no"
    page.wait_for_load_state()
    text = page.locator("[data-answer-stream]").inner_text()
    assert "deux jours" in text, text
    assert "teletravail.txt" in page.locator(".sources").inner_text()
    # feedback in place (htmx): thumbs up, minutes saved, comment
    form = page.locator("form.feedback")
    form.get_by_label("👍 Utile").check()
    form.get_by_label("Minutes gagnées").fill("12")
    form.get_by_label("Commentaire").fill("Réponse claire et sourcée.")
    form.get_by_role("button", name="Envoyer mon avis").click()
    done = page.locator("[data-feedback]")
    done.wait_for()
    assert "Merci" in done.inner_text()
    rows = [r for r in _feedback_rows(stack) if r.comment == "Réponse claire et sourcée."]
    assert len(rows) == 1 and rows[0].useful and rows[0].time_saved_minutes == 12.0
    assert rows[0].link_method == "AUDIT_SEQ" and rows[0].use_case == "uc-open"
    # GetUsage and the report show it
    record = _usage(stack, "uc-open").records[0]
    assert record.feedback >= 1 and record.time_saved_minutes >= 12 and record.useful_rate > 0
    report = _report(stack, tmp_path)
    group = next(g for g in report["groups"] if g["use_case"] == "uc-open")
    assert group["feedback"] == record.feedback
    assert group["time_saved_minutes"] == record.time_saved_minutes
    # the same answer twice: said plainly
    page.go_back()


def test_a_held_answer_says_so(stack: Stack, new_page: Any) -> None:
    page = new_page()
    sign_in(page, stack.url, "key-requester")
    page.goto(f"{stack.url}/ask")
    page.get_by_label("Votre question").fill(QUESTION)
    page.locator("#use_case").select_option("uc-reviewed")
    page.get_by_role("button", name="Demander").click()
    page.wait_for_load_state()
    held = page.locator("[data-held]")
    assert "retenue pour relecture humaine" in held.inner_text()
    assert held.get_attribute("data-held")
    assert page.locator(".sources").count() == 0
    assert page.locator("[data-answer-stream]").inner_text().strip() == ""


def test_an_empty_question_and_an_unknown_use_case_get_the_form_back(
    stack: Stack, new_page: Any
) -> None:
    page = new_page()
    sign_in(page, stack.url, "key-requester")
    page.goto(f"{stack.url}/ask")
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    resp = page.request.post(
        f"{stack.url}/ask", form={"csrf_token": csrf, "question": "", "use_case": "uc-open"}
    )
    assert resp.status == 400
    resp = page.request.post(
        f"{stack.url}/ask", form={"csrf_token": csrf, "question": QUESTION, "use_case": "nope"}
    )
    assert resp.status == 403 and "Traceback" not in resp.text()
    resp = page.request.post(f"{stack.url}/ask", form={"question": QUESTION})
    assert resp.status == 403  # no CSRF token


def _run_ask(ns: argparse.Namespace, stack: Stack) -> int:
    """``cmd_ask`` on its own event loop, in a thread (Playwright holds this thread's loop)."""
    from concurrent.futures import ThreadPoolExecutor

    from docfactory.cli.query import cmd_ask

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(cmd_ask(ns, stack.settings))).result(300)


def _ask_ns(stack: Stack, *, no_feedback: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        question=QUESTION, collection=None, top_k=0, use_case="uc-open", mode=None,
        json=False, daemon=False, address=stack.grpc_address, api_key="key-requester",
        no_feedback=no_feedback,
    )  # fmt: skip


def test_docfactory_ask_prompts_for_feedback_on_a_terminal(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    from docfactory.cli.query import FEEDBACK_PROMPT_FR

    before = _usage(stack, "uc-open").records[0]
    prompts: list[str] = []

    def answer_prompt(prompt: str = "") -> str:
        prompts.append(prompt)
        return "o 7 utile pour le CSE"

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(builtins, "input", answer_prompt)
    assert _run_ask(_ask_ns(stack), stack) == 0
    assert prompts and prompts[0].strip() == FEEDBACK_PROMPT_FR.strip()
    assert "avis enregistré" in capsys.readouterr().out
    after = _usage(stack, "uc-open").records[0]
    assert after.feedback == before.feedback + 1
    assert after.time_saved_minutes == before.time_saved_minutes + 7
    rows = [r for r in _feedback_rows(stack) if r.comment == "utile pour le CSE"]
    assert len(rows) == 1 and rows[0].useful and rows[0].link_method == "AUDIT_SEQ"
    report = _report(stack, tmp_path)
    group = next(g for g in report["groups"] if g["use_case"] == "uc-open")
    assert group["feedback"] == after.feedback

    # --no-feedback, or stdin not a terminal: no prompt at all
    def no_prompt(prompt: str = "") -> str:
        raise AssertionError("prompted")

    monkeypatch.setattr(builtins, "input", no_prompt)
    assert _run_ask(_ask_ns(stack, no_feedback=True), stack) == 0
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert _run_ask(_ask_ns(stack), stack) == 0
    assert _usage(stack, "uc-open").records[0].feedback == after.feedback


# -- dossiers ---------------------------------------------------------------------------------


def _wait(stack: Stack, name: str, states: set[Any], key: str = "key-rev-a") -> Any:
    from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc

    deadline = time.monotonic() + 240
    with stack.channel() as ch:
        stub = wf_grpc.WorkflowServiceStub(ch)
        while True:
            run = stub.GetRun(wf_pb.GetRunRequest(name=name), metadata=md(key), timeout=30).run
            if run.state in states or time.monotonic() > deadline:
                return run
            time.sleep(0.3)


def _start(stack: Stack, files: list[Path]) -> str:
    from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc
    from tests.workflows.conftest import create_dossier_blocking

    with stack.channel() as ch:
        dossier = create_dossier_blocking(ch, files, "key-ops")
        run = (
            wf_grpc.WorkflowServiceStub(ch)
            .StartRun(
                wf_pb.StartRunRequest(dossier=dossier.name, flow="financement"),
                metadata=md("key-ops"),
                timeout=60,
            )
            .run
        )
    return str(run.name)


def _decide(stack: Stack, name: str, key: str, kind: int, comment: str = "") -> Any:
    import grpc

    from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc

    with stack.channel() as ch:
        try:
            return wf_grpc.WorkflowServiceStub(ch).SubmitDecision(
                wf_pb.SubmitDecisionRequest(name=name, kind=kind, comment=comment),  # type: ignore[arg-type]
                metadata=md(key),
                timeout=60,
            )
        except grpc.RpcError as exc:
            return exc


def _cells(page: Any) -> dict[str, str]:
    section = page.locator("#dossier-usage")
    return {
        k: section.locator(f"td[data-k='{k}']").inner_text()
        for k in ("runs", "approval_rate", "approvals", "rejections", "feedback")
    }


def test_usage_dossier_section_matches_the_database(
    stack: Stack, new_page: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
    from tests.workflows import dossiers

    approve, reject = wf_pb.DECISION_KIND_APPROVE, wf_pb.DECISION_KIND_REJECT
    waiting = {wf_pb.RUN_STATE_AWAITING_SIGNOFF, wf_pb.RUN_STATE_INCOMPLETE}
    folder = tmp_path_factory.mktemp("usage-dossiers")
    signed = _start(stack, dossiers.financement(folder / "a"))
    rejected = _start(stack, dossiers.financement(folder / "b"))
    incomplete = _start(stack, dossiers.financement(folder / "c", with_rib=False))
    assert _wait(stack, signed, waiting).state == wf_pb.RUN_STATE_AWAITING_SIGNOFF
    assert _wait(stack, rejected, waiting).state == wf_pb.RUN_STATE_AWAITING_SIGNOFF
    assert _wait(stack, incomplete, waiting).state == wf_pb.RUN_STATE_INCOMPLETE
    _decide(stack, signed, "key-rev-a", approve)
    refused = _decide(stack, signed, "key-rev-a", approve)  # a refused click (same reviewer)
    assert hasattr(refused, "code"), refused
    _decide(stack, signed, "key-rev-b", approve)
    _decide(stack, rejected, "key-rev-b", reject, comment="Pièces incohérentes.")
    assert _wait(stack, signed, {wf_pb.RUN_STATE_COMPLETED}).state == wf_pb.RUN_STATE_COMPLETED
    assert _wait(stack, rejected, {wf_pb.RUN_STATE_REJECTED}).state == wf_pb.RUN_STATE_REJECTED

    # feedback on the signed run, through the console's route (the run page's include)
    owner = new_page()
    sign_in(owner, stack.url, "key-owner")
    owner.goto(f"{stack.url}/ask")
    csrf = owner.locator("input[name=csrf_token]").first.get_attribute("value")
    run_id = signed.rsplit("/", 1)[-1]
    resp = owner.request.post(
        f"{stack.url}/feedback",
        form={"csrf_token": csrf, "run": run_id, "verdict": "up", "minutes": "45",
              "comment": "Dossier instruit en une matinée.", "next": "/usage"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert resp.status == 200 and "Merci" in resp.text(), resp.text()
    again = owner.request.post(
        f"{stack.url}/feedback",
        form={"csrf_token": csrf, "run": rejected.rsplit("/", 1)[-1], "verdict": "up"},
        headers={"HX-Request": "true"},
    )
    assert again.headers.get("x-feedback-status") == "409"  # not signed: no feedback

    # the database
    engine = make_engine(stack.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            states: dict[str, int] = dict(
                conn.execute(
                    sa.text("SELECT state, COUNT(*) FROM workflow_runs WHERE tenant = 'nord' "
                            "GROUP BY state")
                ).all()
            )  # fmt: skip
            kinds: dict[str, int] = dict(
                conn.execute(
                    sa.text("SELECT kind, COUNT(*) FROM workflow_decisions WHERE tenant = 'nord' "
                            "GROUP BY kind")
                ).all()
            )  # fmt: skip
            worker_searches = conn.execute(
                sa.text("SELECT COUNT(*) FROM audit_records WHERE action = 'SEARCH' "
                        "AND key_id = 'bulk-worker'")
            ).scalar_one()  # fmt: skip
            user_searches = conn.execute(
                sa.text("SELECT COUNT(*) FROM audit_records WHERE action = 'SEARCH' "
                        "AND tenant = 'nord' AND key_id != 'bulk-worker'")
            ).scalar_one()  # fmt: skip
            denied = list(
                conn.execute(
                    sa.text("SELECT details FROM audit_records WHERE action = 'DENIED' "
                            "AND tenant = 'nord'")
                ).scalars()
            )  # fmt: skip
    finally:
        engine.dispose()
    total = sum(states.values())
    ended = sum(states.get(s, 0) for s in ("COMPLETED", "REJECTED", "INCOMPLETE"))
    approvals = kinds.get("APPROVE", 0) + kinds.get("AMEND", 0)

    usage = _usage(stack)
    d = usage.dossiers
    assert d.runs == total
    assert {s.state: s.runs for s in d.by_state} == states
    assert d.incomplete == states.get("INCOMPLETE", 0) >= 1
    assert d.approval_rate == pytest.approx(states.get("COMPLETED", 0) / ended)
    assert d.approvals == approvals and d.rejections == kinds.get("REJECT", 0)
    assert d.decided_timed >= 2 and d.median_decision_seconds > 0
    assert d.feedback == 1 and d.time_saved_minutes == 45 and d.useful_rate == 1.0

    # user actions only: the dossiers' rule retrieval is not a user search; a refused click
    # is not a refused question
    assert worker_searches > 0, "the dossier worker made no Search (rule retrieval)"
    assert sum(r.internal_searches for r in usage.records) == worker_searches
    assert sum(r.searches for r in usage.records) == user_searches
    other = [x for x in denied if (json.loads(x) if isinstance(x, str) else x).get("rpc")
             not in (None, "", "Search", "Answer")]  # fmt: skip
    assert len(other) >= 1
    assert sum(r.denied_other for r in usage.records) == len(other)
    assert sum(r.denied for r in usage.records) == len(denied) - len(other)

    # the page says the same
    owner.goto(f"{stack.url}/usage")
    cells = _cells(owner)
    assert cells["runs"] == str(total)
    assert cells["approval_rate"] == f"{states.get('COMPLETED', 0) / ended * 100:.0f} %"
    assert cells["approvals"] == str(approvals)
    assert cells["rejections"] == str(kinds.get("REJECT", 0))
    assert cells["feedback"] == "1"
    for state, count in states.items():
        row = owner.locator(f"#dossier-usage tr[data-state='{state}']")
        assert row.locator("td").nth(1).inner_text() == str(count)
        assert state not in row.locator("td").nth(0).inner_text()  # translated
    # the report: same figures
    report = _report(stack, tmp_path_factory.mktemp("report"))
    assert report["dossiers"]["runs"] == total
    assert report["dossiers"]["approval_rate"] == pytest.approx(d.approval_rate)
    assert report["dossiers"]["feedback"] == 1
    assert dt.date.today().isoformat() >= report["period"]["from"]
