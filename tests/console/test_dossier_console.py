"""The console as the analyst's and reviewer's workplace (issue 25), over HTTP against a real
server (policy, SQLite) whose dossier workers start only half-way through the module:

- with no worker, a run started from the console shows the "no worker" notice within 30 s
  (``DOCFACTORY_WORKFLOWS_QUEUED_NOTICE_SECONDS`` set to 2 here);
- a flow-name typo is the start form's error (400, the dossier page), not a 404 page;
- the dossier list shows each dossier's state in words, filters by state and flow;
- every page a signed-in admin reaches is in French without an untranslated enum or reason
  (run states, field statuses, check outcomes and severities, decision kinds, job and document
  states, roles, steps); steps come in execution order with human labels.

The pieces without a server (meaningful state, step order and labels, plurals, reasons) are
unit-tested first."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from docfactory.console import i18n
from docfactory.console.dossiers import (
    DOSSIER_STATES,
    meaningful_state,
    queued_notices,
    step_key,
    step_label,
)
from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc
from tests.console.conftest import Stack, _h, make_settings, md

FORM_TOKEN = re.compile(r'action="/signin"[^>]*>\s*<input [^>]*name="csrf_token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NOTICE_FR = "Aucun worker n'a pris ce dossier depuis"

# -- without a server ------------------------------------------------------------------------


def test_meaningful_state_keeps_a_signed_dossier_signed() -> None:
    S = wf_pb  # newest first
    assert meaningful_state([]) == "new"
    assert meaningful_state([S.RUN_STATE_INCOMPLETE, S.RUN_STATE_COMPLETED]) == "signed"
    assert meaningful_state([S.RUN_STATE_FAILED, S.RUN_STATE_REJECTED]) == "rejected"
    assert meaningful_state([S.RUN_STATE_CANCELLED, S.RUN_STATE_AWAITING_SIGNOFF]) == "awaiting"
    assert meaningful_state([S.RUN_STATE_QUEUED, S.RUN_STATE_COMPLETED]) == "queued"
    assert meaningful_state([S.RUN_STATE_INCOMPLETE, S.RUN_STATE_FAILED]) == "incomplete"
    assert meaningful_state([S.RUN_STATE_RUNNING]) == "running"
    assert set(DOSSIER_STATES.values()) <= set(i18n.ENUMS["fr"]["dossier_state"])


def test_steps_in_execution_order_with_labels() -> None:
    docs = ["d-b", "d-a"]
    names = {"d-a": "kbis.pdf", "d-b": "demande.docx"}
    alphabetical = [
        "check:0", "check:1", "classify", "draft:0", "draft:1", "extract:d-a", "extract:d-b",
        "release", "retrieve", "signoff",
    ]  # fmt: skip
    ordered = sorted(alphabetical, key=lambda s: step_key(s, docs))
    assert ordered == [
        "classify", "extract:d-b", "extract:d-a", "check:0", "retrieve", "draft:0", "check:1",
        "draft:1", "signoff", "release",
    ]  # fmt: skip
    fr = i18n.labeler("fr")
    assert [step_label(s, names, fr) for s in ordered] == [
        "Classement", "Extraction — demande.docx", "Extraction — kbis.pdf", "Contrôles",
        "Recherche des règles applicables", "Note (version 1)", "Contrôles (version 2)",
        "Note (version 2)", "Signature", "Publication",
    ]  # fmt: skip
    assert step_label("draft:0", names, i18n.labeler("en")) == "Note (version 1)"


def test_plurals_labels_and_reasons() -> None:
    fr, en = i18n.pluralizer("fr"), i18n.pluralizer("en")
    assert [fr("pages", n) for n in (0, 1, 2)] == ["0 page", "1 page", "2 pages"]
    assert fr("people", 1) == "1 personne" and en("people", 2) == "2 people"
    assert en("pages", 1) == "1 page" and en("pages", 0) == "0 pages"
    assert i18n.labeler("fr")("check_outcome", "NOT_EVALUATED") == "Non évalué"
    assert i18n.labeler("fr")("severity", "blocking") == "bloquant"
    assert i18n.labeler("fr")("no_such_kind", "X_Y") == "X_Y"
    assert set(i18n.ENUMS["fr"]) == set(i18n.ENUMS["en"])
    for kind, table in i18n.ENUMS["fr"].items():
        assert set(table) == set(i18n.ENUMS["en"][kind]), kind
    assert set(i18n.REASONS["fr"]) == set(i18n.REASONS["en"])
    assert set(i18n.PLURALS["fr"]) == set(i18n.PLURALS["en"])
    text = i18n.reason_text("fr", "SUBMITTER_CANNOT_APPROVE", "the submitter ... (English)")
    assert "quatre yeux" in text and "English" not in text
    assert i18n.reason_text("fr", "FLOW_NOT_FOUND", "x", flow="financment") == (
        "Flux « financment » inconnu."
    )
    # an unknown reason keeps its code and the server's message (and the scan below flags it)
    assert "SOME_NEW_REASON" in i18n.reason_text("fr", "SOME_NEW_REASON", "msg")
    for enum, prefix, kind in (
        (wf_pb.RunState, "RUN_STATE_", "run_state"),
        (wf_pb.CheckOutcome, "CHECK_OUTCOME_", "check_outcome"),
        (wf_pb.DecisionKind, "DECISION_KIND_", "decision_kind"),
    ):
        for name in enum.keys():  # noqa: SIM118 (an enum wrapper, not a dict)
            if not name.endswith("UNSPECIFIED"):
                assert name.removeprefix(prefix) in i18n.ENUMS["fr"][kind], name


@dataclass
class _FakeRun:
    notice: Any


class _FakeWorkflows:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def get_run(self, key: str, name: str) -> Any:
        self.asked.append(name)
        return _FakeRun(wf_pb.RunNotice(reason="NO_WORKER", message="m", queued_seconds=42))


def test_queued_notices_of_a_page_ask_only_for_queued_dossiers() -> None:
    """The list asks GetRun for the QUEUED dossiers of the page (``Dossier.latest_run``)."""
    fake = _FakeWorkflows()
    page = [
        wf_pb.Dossier(
            name="dossiers/a", latest_run_state=wf_pb.RUN_STATE_QUEUED, latest_run="runs/r1"
        ),
        wf_pb.Dossier(
            name="dossiers/b", latest_run_state=wf_pb.RUN_STATE_COMPLETED, latest_run="runs/r2"
        ),
        wf_pb.Dossier(name="dossiers/c", latest_run_state=wf_pb.RUN_STATE_QUEUED),
    ]
    got = asyncio.run(queued_notices(fake, "k", page))
    assert fake.asked == ["runs/r1"] and list(got) == ["dossiers/a"]
    assert got["dossiers/a"].reason == "NO_WORKER"


# -- against a real server ---------------------------------------------------------------------

#: Enum names and raw English words that must not reach a French page's text.
_SNAKE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
_WORDS = [
    "QUEUED", "RUNNING", "INCOMPLETE", "COMPLETED", "REJECTED", "CANCELLED", "FAILED",
    "ESCALATED", "FOUND", "AMENDED", "MISSING", "UNSUPPORTED", "PASSED", "APPROVE", "AMEND",
    "REJECT", "APPROVED", "SUCCEEDED", "INDEXED", "PROCESSING", "PUBLIC", "INTERNAL",
    "CONFIDENTIAL", "RESTRICTED", "UPLOAD", "blocking", "warning", "rules", "reviewer",
    "operator", "owner", "ingester", "auditor", "classify", "retrieve", "release", "signoff",
    "Queued", "Running", "Signed", "Awaiting", "Failed", "Found", "Passed",
]  # fmt: skip
_WORD = re.compile(r"(?<![\w-])(" + "|".join(_WORDS) + r")(?![\w-])")
_STEP = re.compile(r"\b(?:extract|check|draft):\S")


def untranslated(page: str) -> list[str]:
    """Enum names, reasons and English words in a page's visible text (tags, attributes,
    scripts and ``<code>`` — technical identifiers shown as such — left out)."""
    body = re.sub(r"(?is)<(script|style|code|title)\b.*?</\1>", " ", page)
    text = html.unescape(re.sub(r"(?s)<[^>]+>", " ", body))
    return sorted(set(_SNAKE.findall(text)) | set(_WORD.findall(text)) | set(_STEP.findall(text)))


def _policy(path: Path) -> None:
    """The console tests' policy, plus an admin key and the second flow on credit-pro."""
    policy = yaml.safe_load(path.read_text())
    policy["api_keys"].append(
        {
            "id": "admin-nord",
            "tenant": "nord",
            "sha256": _h("key-admin"),
            "roles": ["admin", "reviewer", "auditor", "operator", "owner", "ingester"],
        }
    )
    for uc in policy["use_cases"]:
        if uc["id"] == "credit-pro":
            uc["flows"] = ["financement", "fin-de-contrat"]
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real server, no dossier worker yet (the notice test needs none); a run QUEUED for
    2 s without a worker gets its NO_WORKER notice."""
    tmp = tmp_path_factory.mktemp("dossier-console")
    settings = make_settings(tmp, workflows={"queued_notice_seconds": 2})
    _policy(Path(settings.policy_file))
    running = Stack(settings).start()
    try:
        yield running
    finally:
        running.stop()


def _client(server: Stack, key: str, lang: str = "fr") -> TestClient:
    from docfactory.console.app import ConsoleConfig, create_app

    app = create_app(ConsoleConfig(address=server.grpc_address))
    client = TestClient(app, base_url="http://testserver", follow_redirects=False)
    client.__enter__()
    client.headers["accept-language"] = lang
    page = client.get("/signin")
    found = FORM_TOKEN.search(page.text)
    assert found, page.text
    resp = client.post("/signin", data={"api_key": key, "csrf_token": found.group(1)})
    assert resp.status_code == 303, resp.text
    return client


@pytest.fixture(scope="module")
def dossier(server: Stack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.workflows import dossiers
    from tests.workflows.conftest import create_dossier_blocking

    files = dossiers.financement(tmp_path_factory.mktemp("files"))
    with server.channel() as ch:
        return create_dossier_blocking(ch, files, "key-ops")


@pytest.fixture(scope="module")
def ops(server: Stack) -> Iterator[TestClient]:
    client = _client(server, "key-ops")
    yield client
    client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def admin(server: Stack) -> Iterator[TestClient]:
    client = _client(server, "key-admin")
    yield client
    client.__exit__(None, None, None)


def _csrf(client: TestClient, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found
    return found.group(1)


_STARTED: dict[str, str] = {}


def _text(resp: Any) -> str:
    return html.unescape(resp.text)


@pytest.mark.slow
def test_no_worker_notice_within_30_s_of_a_run_start(ops: TestClient, dossier: Any) -> None:
    path = f"/dossiers/{dossier.dossier_id}"
    resp = ops.post(f"{path}/runs", data={"flow": "financement", "csrf_token": _csrf(ops, path)})
    assert resp.status_code == 303, resp.text
    run_path = resp.headers["location"]
    _STARTED["run"] = run_path.rsplit("/", 1)[-1]
    started = time.monotonic()
    page = ops.get(run_path)
    assert page.status_code == 200 and "Traceback" not in page.text
    # the page refreshes its state part every 2 s while the run is queued (htmx)
    assert f'hx-get="{run_path}/live"' in page.text
    assert 'data-state="QUEUED"' in page.text and "En file d'attente" in _text(page)
    while NOTICE_FR not in (live := _text(ops.get(f"{run_path}/live"))):
        assert time.monotonic() - started < 30, live
        time.sleep(0.5)
    assert 'data-reason="NO_WORKER"' in live and "--dossier-workers 0" in live
    assert untranslated(live) == [], untranslated(live)
    # in English too
    en = _text(ops.get(f"{run_path}/live?lang=en"))
    assert "No worker has taken this run for" in en
    ops.get("/?lang=fr")
    # the dossier list shows the dossier queued, and filters by state and flow
    listing = _text(ops.get("/dossiers"))
    row = re.search(rf'<tr data-dossier="{dossier.dossier_id}">.*?</tr>', listing, re.S)
    assert row and 'data-state="queued"' in row.group(0), listing
    assert "En file d'attente" in row.group(0) and "5 documents" in row.group(0), row.group(0)
    assert NOTICE_FR in _text(ops.get("/dossiers"))  # the list says it too
    assert dossier.dossier_id in ops.get("/dossiers?state=queued&flow=financement").text
    assert dossier.dossier_id not in ops.get("/dossiers?state=signed").text
    assert dossier.dossier_id not in ops.get("/dossiers?state=queued&flow=fin-de-contrat").text
    assert dossier.dossier_id in ops.get("/dossiers?state=QUEUED").text  # run state names too
    bad = ops.get("/dossiers?state=NOPE")
    assert bad.status_code == 400 and "État inconnu : « NOPE »" in _text(bad)


@pytest.mark.slow
def test_a_flow_typo_is_a_form_error_not_a_404(ops: TestClient, dossier: Any) -> None:
    path = f"/dossiers/{dossier.dossier_id}"
    resp = ops.post(f"{path}/runs", data={"flow": "financment", "csrf_token": _csrf(ops, path)})
    assert resp.status_code == 400, resp.status_code
    assert "Flux « financment » inconnu." in resp.text
    assert "Flux possibles : " in resp.text and "financement" in resp.text
    assert 'id="form-error"' in resp.text and 'value="financment"' in resp.text  # kept, to fix
    assert "Introuvable" not in resp.text and "FLOW_NOT_FOUND" not in resp.text
    empty = ops.post(f"{path}/runs", data={"flow": " ", "csrf_token": _csrf(ops, path)})
    assert empty.status_code == 400 and "Indiquez le flux" in empty.text


def _wait(server: Stack, run_id: str, states: set[int], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    with server.channel() as ch:
        stub = wf_grpc.WorkflowServiceStub(ch)
        while True:
            run = stub.GetRun(
                wf_pb.GetRunRequest(name=f"runs/{run_id}"), metadata=md("key-rev-a"), timeout=30
            ).run
            if run.state in states or time.monotonic() > deadline:
                return run
            time.sleep(0.5)


@pytest.mark.slow
def test_signed_run_and_every_admin_page_in_french(
    server: Stack, admin: TestClient, ops: TestClient, dossier: Any
) -> None:
    run_id = _STARTED.get("run")
    if run_id is None:
        pytest.skip("needs the run of the no-worker test")
    server.start_workers()  # the queued run starts as soon as a worker heartbeats
    run = _wait(server, run_id, {wf_pb.RUN_STATE_AWAITING_SIGNOFF, wf_pb.RUN_STATE_FAILED})
    assert run.state == wf_pb.RUN_STATE_AWAITING_SIGNOFF, run
    # the waiting run, as its reviewer sees it (draft fields, checks, note, decision form)
    waiting = admin.get(f"/runs/{run_id}")
    assert waiting.status_code == 200 and 'name="decision"' in waiting.text
    problems = {f"/runs/{run_id} (waiting)": untranslated(waiting.text)}
    with server.channel() as ch:
        wf_grpc.WorkflowServiceStub(ch).SubmitDecision(
            wf_pb.SubmitDecisionRequest(
                name=f"runs/{run_id}", kind=wf_pb.DECISION_KIND_APPROVE, comment="Conforme."
            ),
            metadata=md("key-rev-a"),
            timeout=60,
        )
    run = _wait(server, run_id, {wf_pb.RUN_STATE_COMPLETED, wf_pb.RUN_STATE_FAILED})
    assert run.state == wf_pb.RUN_STATE_COMPLETED, run

    page = admin.get(f"/runs/{run_id}").text
    # steps in execution order, with labels (no hash, no "check:0" before "classify")
    steps = re.findall(r'<li data-step="([^"]+)">([^<]*)</li>', page)
    names = [s for s, _ in steps]
    assert names[0] == "classify" and names.index("retrieve") > names.index("check:0")
    assert names.index("draft:0") > names.index("retrieve"), names
    labels = [label for _, label in steps]
    assert labels[0].startswith("Classement")
    extracts = [label for s, label in steps if s.startswith("extract:")]
    assert len(extracts) == 5, extracts
    for label in extracts:
        assert label.startswith("Extraction — ") and not re.search("[0-9a-f]{12}", label), label
    assert 'data-state="COMPLETED"' in page and "Signé et publié" in page
    assert 'data-kind="APPROVE"' in page and "Approbation" in page
    assert 'data-status="FOUND"' in page and "Trouvé" in page
    assert "bloquant" in page or "avertissement" in page

    listing = admin.get("/dossiers").text
    assert 'data-state="signed"' in listing and "Signé" in listing
    assert dossier.dossier_id in admin.get("/dossiers?state=signed").text

    pages = [
        "/", "/inbox", "/dossiers", "/dossiers?state=signed", f"/dossiers/{dossier.dossier_id}",
        f"/runs/{run_id}", "/documents", "/jobs", "/usage", "/audit", "/dossiers?state=NOPE",
    ]  # fmt: skip
    docs = re.findall(r'href="/documents/([^"]+)"', admin.get("/documents").text)
    pages += [f"/documents/{d}" for d in docs[:2]]
    jobs = re.findall(r'href="/jobs/([^"]+)"', admin.get("/jobs").text)
    pages += [f"/jobs/{j}" for j in jobs[:2]]
    for path in pages:
        resp = admin.get(path)
        assert resp.status_code in (200, 400), (path, resp.status_code)
        problems[path] = untranslated(resp.text)
    assert {p: found for p, found in problems.items() if found} == {}


@pytest.mark.slow
def test_a_signed_dossier_stays_signed_after_a_later_incomplete_run(
    server: Stack, ops: TestClient, dossier: Any
) -> None:
    if _STARTED.get("run") is None:
        pytest.skip("needs the signed run")
    path = f"/dossiers/{dossier.dossier_id}"
    resp = ops.post(f"{path}/runs", data={"flow": "fin-de-contrat", "csrf_token": _csrf(ops, path)})
    assert resp.status_code == 303, resp.text
    run_id = resp.headers["location"].rsplit("/", 1)[-1]
    run = _wait(server, run_id, {wf_pb.RUN_STATE_INCOMPLETE, wf_pb.RUN_STATE_FAILED}, 120)
    assert run.state == wf_pb.RUN_STATE_INCOMPLETE, run
    page = ops.get(path).text
    assert 'data-state="signed"' in page


def test_the_scan_catches_enums_and_english_words() -> None:
    page = (
        '<p data-state="QUEUED">En file</p><code>PARSE_ERROR</code><li>check:0 — 3 ms</li>'
        "<td>FOUND</td><small>(blocking)</small><p>SAME_REVIEWER: x</p><p>reviewer-alice</p>"
    )
    assert untranslated(page) == ["FOUND", "SAME_REVIEWER", "blocking", "check:0"]
