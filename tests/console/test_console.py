"""The web console in a real browser (Debian chromium through Playwright) against a real server:
review flow with claims, roles, CSRF, sign-out, bad input, documents, jobs, usage, audit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from playwright.sync_api import expect

from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from tests.console.conftest import IMG, Stack, md, sign_in

pytestmark = pytest.mark.slow

FAQ = (
    "Frais de mission. Les frais de repas sont remboursés jusqu'à 45 euros par jour sur "
    "présentation des justificatifs. Les nuits d'hôtel sont remboursées jusqu'à 120 euros."
)
QUESTION = "Quel est le plafond des frais de repas ?"


@pytest.fixture(scope="module", autouse=True)
def corpus(stack: Stack) -> Iterator[None]:
    stack.upload("frais-de-mission.txt", FAQ)
    yield


def _review_state(stack: Stack, review_id: str) -> gov_pb.Review:
    with stack.channel() as ch:
        stub = gov_grpc.GovernanceServiceStub(ch)
        review: gov_pb.Review = stub.GetReview(
            gov_pb.GetReviewRequest(review_id=review_id), metadata=md("key-rev-b"), timeout=30
        ).review
        return review


def _csrf(page: Any) -> str:
    return str(page.locator("input[name=csrf_token]").first.get_attribute("value"))


def _no_trace(page: Any) -> None:
    body = page.content()
    assert "Traceback" not in body and 'File "' not in body


def test_reviewer_approves_and_the_requester_receives_the_answer(
    stack: Stack, new_page: Any
) -> None:
    review_id = stack.ask_held(QUESTION)
    with stack.channel() as ch, pytest.raises(grpc.RpcError) as pending:
        gov_grpc.GovernanceServiceStub(ch).GetReviewedAnswer(
            gov_pb.GetReviewedAnswerRequest(review_id=review_id), metadata=md("key-requester")
        )
    assert pending.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    page = new_page()
    sign_in(page, stack.url, "key-rev-a")
    page.get_by_role("navigation").get_by_role("link", name="À relire").click()
    link = page.locator(f"a[data-review='{review_id}']")
    assert link.count() == 1
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "console-inbox.png"), full_page=True)
    link.click()
    # the question beside the cited passages, highlighted, with the page of the document
    assert page.locator("blockquote.question").inner_text() == QUESTION
    assert "45 euros" in page.locator(".passage mark").first.inner_text()
    page.get_by_role("button", name="Prendre en charge").click()
    assert "Prise par vous" in page.locator("#claim-state").inner_text()
    page.screenshot(path=str(IMG / "console-review.png"), full_page=True)
    page.get_by_label("Approuver").check()
    page.get_by_label("Commentaire").fill("Conforme au barème 2025.")
    page.get_by_role("button", name="Enregistrer la décision").click()
    assert page.url.endswith("/inbox")
    assert "Décision enregistrée : Approuvée" in page.locator(".flash").inner_text()
    assert page.locator(f"a[data-review='{review_id}']").count() == 0

    with stack.channel() as ch:
        released = gov_grpc.GovernanceServiceStub(ch).GetReviewedAnswer(
            gov_pb.GetReviewedAnswerRequest(review_id=review_id), metadata=md("key-requester")
        )
    assert released.state == "APPROVED" and "45 euros" in released.text
    assert released.reviewer_key_id == "reviewer-alice"
    log = AuditLog(make_engine(stack.settings.resolved_database_url))
    decisions = [
        r
        for r in log.records()
        if r.action == "REVIEW_DECISION" and r.details.get("review_id") == review_id
    ]
    assert [(r.key_id, r.outcome) for r in decisions] == [("reviewer-alice", "APPROVED")]


def test_a_second_reviewer_cannot_claim_a_claimed_item(stack: Stack, new_page: Any) -> None:
    review_id = stack.ask_held(QUESTION)
    alice, bob = new_page(), new_page()
    sign_in(alice, stack.url, "key-rev-a")
    alice.goto(f"{stack.url}/inbox/{review_id}")
    alice.get_by_role("button", name="Prendre en charge").click()

    sign_in(bob, stack.url, "key-rev-b")
    bob.goto(f"{stack.url}/inbox/{review_id}")
    assert "Prise par reviewer-alice" in bob.locator("#claim-state").inner_text()
    assert bob.get_by_role("button", name="Prendre en charge").count() == 0
    assert bob.get_by_role("button", name="Enregistrer la décision").count() == 0
    token = _csrf(bob)
    # posting anyway is refused by the service, with the reason on the page
    for action, form in (
        ("claim", {"csrf_token": token}),
        ("decide", {"csrf_token": token, "decision": "approve"}),
    ):
        resp = bob.request.post(f"{stack.url}/inbox/{review_id}/{action}", form=form)
        assert resp.status == 409, (action, resp.status)
        assert "REVIEW_CLAIMED" in resp.text()
    review = _review_state(stack, review_id)
    assert review.state == "PENDING_REVIEW" and review.claimed_by_key_id == "reviewer-alice"


def test_without_the_role_403_on_the_page_and_on_the_post(stack: Stack, new_page: Any) -> None:
    review_id = stack.ask_held(QUESTION)
    page = new_page()
    sign_in(page, stack.url, "key-owner")
    assert page.get_by_role("link", name="À relire").count() == 0
    resp = page.goto(f"{stack.url}/inbox")
    assert resp.status == 403
    assert "Accès refusé" in page.locator("h1").inner_text()
    token = _csrf(page)
    for path, form in (
        (f"/inbox/{review_id}/decide", {"csrf_token": token, "decision": "approve"}),
        (f"/inbox/{review_id}/claim", {"csrf_token": token}),
    ):
        resp = page.request.post(stack.url + path, form=form)
        assert resp.status == 403, path
    assert page.goto(f"{stack.url}/jobs").status == 403
    assert page.goto(f"{stack.url}/audit").status == 403
    # the owner role opens the usage page
    assert page.goto(f"{stack.url}/usage").status == 200
    review = _review_state(stack, review_id)
    assert review.state == "PENDING_REVIEW" and not review.claimed_by_key_id


def test_a_form_without_its_csrf_token_is_refused(stack: Stack, new_page: Any) -> None:
    review_id = stack.ask_held(QUESTION)
    page = new_page()
    sign_in(page, stack.url, "key-rev-a")
    page.goto(f"{stack.url}/inbox/{review_id}")
    for form in ({"decision": "approve"}, {"decision": "approve", "csrf_token": "forged"}):
        resp = page.request.post(f"{stack.url}/inbox/{review_id}/decide", form=form)
        assert resp.status == 403
        assert "jeton de sécurité" in resp.text()
    assert page.request.post(f"{stack.url}/signout", form={}).status == 403
    assert _review_state(stack, review_id).state == "PENDING_REVIEW"
    # the sign-in form has its own token (no login CSRF)
    fresh = new_page()
    fresh.goto(f"{stack.url}/signin")
    resp = fresh.request.post(
        f"{stack.url}/signin", form={"api_key": "key-rev-a", "csrf_token": "forged"}
    )
    assert resp.status == 403


def test_sign_out_ends_the_session(stack: Stack, new_page: Any, browser: Any) -> None:
    page = new_page()
    sign_in(page, stack.url, "key-rev-a")
    cookies = page.context.cookies()
    (session,) = [c for c in cookies if c["name"] == "docfactory_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    page.get_by_role("button", name="Se déconnecter").click()
    assert "/signin" in page.url and "Vous êtes déconnecté" in page.content()
    page.goto(f"{stack.url}/inbox")
    assert "/signin" in page.url
    # the old cookie no longer opens anything
    replay = new_page()
    replay.context.add_cookies([{**session}])
    replay.goto(f"{stack.url}/inbox")
    assert "/signin" in replay.url
    # a wrong key is refused with the service's reason
    sign_in(replay, stack.url, "not-a-key")
    assert "Connexion refusée" in replay.locator("[role=alert]").inner_text()


def test_bad_input_gets_clear_pages(stack: Stack, new_page: Any) -> None:
    review_id = stack.ask_held(QUESTION)
    page = new_page()
    sign_in(page, stack.url, "key-rev-a")
    for path in ("/inbox/0123456789abcdef", "/inbox/..%2F..", "/documents/nope", "/nowhere"):
        resp = page.goto(stack.url + path)
        assert resp.status == 404, path
        assert "Introuvable" in page.locator("h1").inner_text()
        _no_trace(page)
    page.goto(f"{stack.url}/inbox/{review_id}")
    token = _csrf(page)
    for form, message in (
        ({"decision": "maybe"}, "Choisissez une décision"),
        ({"decision": "amend"}, "demande le texte modifié"),
        ({"decision": "approve", "amended_text": "x"}, "ne vaut que pour"),
    ):
        resp = page.request.post(
            f"{stack.url}/inbox/{review_id}/decide", form={"csrf_token": token, **form}
        )
        assert resp.status == 400 and message in resp.text(), form
    assert _review_state(stack, review_id).state == "PENDING_REVIEW"
    ops = new_page()
    sign_in(ops, stack.url, "key-ops")
    assert ops.goto(f"{stack.url}/usage?from=2024-13-45").status == 400
    assert "AAAA-MM-JJ" in ops.locator("[role=alert]").inner_text()
    assert ops.goto(f"{stack.url}/jobs/does-not-exist").status == 404


def test_documents_search_and_role_checked_delete(stack: Stack, new_page: Any) -> None:
    doc = stack.upload("a-supprimer.txt", "Note temporaire sur le télétravail du vendredi.")
    owner = new_page()
    sign_in(owner, stack.url, "key-owner")
    owner.goto(f"{stack.url}/documents/{doc.document_id}")
    assert owner.get_by_role("button", name="Supprimer").count() == 0
    resp = owner.request.post(
        f"{stack.url}/documents/{doc.document_id}/delete",
        form={"csrf_token": _csrf(owner), "confirm": "yes"},
    )
    assert resp.status == 403

    page = new_page()
    sign_in(page, stack.url, "key-ops")
    page.goto(f"{stack.url}/documents")
    page.get_by_label("Recherche", exact=True).fill("plafond repas")
    page.get_by_label("Cas d'usage").select_option("uc-open")
    page.get_by_role("button", name="Rechercher").click()
    first = page.locator(".passage").first
    assert "frais-de-mission.txt" in first.locator("figcaption").inner_text()
    assert "45 euros" in first.locator("blockquote").inner_text()
    page.goto(f"{stack.url}/documents/{doc.document_id}")
    assert "Interne" in page.locator("dl.meta").inner_text()  # INTERNAL, in words
    page.get_by_role("button", name="Supprimer").click()  # without the confirmation
    assert "Cochez la confirmation" in page.locator("[role=alert]").inner_text()
    page.get_by_label("Je confirme").check()
    page.get_by_role("button", name="Supprimer").click()
    assert "Document supprimé" in page.locator(".flash").inner_text()
    assert page.goto(f"{stack.url}/documents/{doc.document_id}").status == 404


def test_usage_audit_and_english(stack: Stack, new_page: Any) -> None:
    stack.ask_held(QUESTION)
    page = new_page()
    sign_in(page, stack.url, "key-ops")
    page.goto(f"{stack.url}/usage")
    section = page.locator("section.usage", has_text="nord / uc-reviewed")
    assert section.count() == 1
    assert section.locator("svg rect").count() > 0
    auditor = new_page("en-GB")
    sign_in(auditor, stack.url, "key-rev-a")
    auditor.goto(f"{stack.url}/audit")
    assert re.search(
        r"Chain intact: \d+ records checked", auditor.locator("#chain-status").inner_text()
    )
    export = auditor.request.get(f"{stack.url}/audit/export.jsonl")
    assert export.status == 200 and "attachment" in export.headers["content-disposition"]
    rows = [json.loads(line) for line in export.text().splitlines()]
    assert rows and {r["tenant"] for r in rows} == {"nord"}
    assert "ANSWER" in {r["action"] for r in rows}
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    # keyboard: the first Tab lands on the skip link, which moves the focus to the content
    auditor.keyboard.press("Tab")
    assert auditor.evaluate("() => document.activeElement.className") == "skip"
    auditor.keyboard.press("Enter")
    assert auditor.evaluate("() => document.activeElement.id") == "main"
    auditor.goto(f"{stack.url}/inbox?lang=fr")
    assert auditor.locator("h1").inner_text() == "Réponses en attente de relecture"
    # every form control has a label; the page says its language
    for path in ("/inbox", "/documents", "/usage"):
        auditor.goto(stack.url + path)
        unlabeled = auditor.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                 .map(e => e.name)"""
        )
        assert unlabeled == [], (path, unlabeled)
        low = auditor.evaluate(CONTRAST_JS)
        assert low == [], (path, low)
        assert auditor.locator("html").get_attribute("lang") == "fr"


# WCAG 2.1 AA 1.4.3: text contrast >= 4.5:1 against the first opaque background behind it.
CONTRAST_JS = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll('a, p, td, th, label, button, h1, h2, span, dd, dt')) {
    if (!el.textContent.trim() || !el.getClientRects().length) continue;
    const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) out.push([el.tagName, el.textContent.trim().slice(0, 30), ratio.toFixed(2)]);
  }
  return out;
}"""


def test_services_down_gives_a_clear_page() -> None:
    import socket

    from starlette.testclient import TestClient

    from docfactory.console.app import ConsoleConfig, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    app = create_app(ConsoleConfig(address=dead))
    with TestClient(app, base_url="http://console.test") as client:
        page = client.get("/signin")  # the form's token, issued by the server
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        token = found.group(1) if found else ""
        resp = client.post("/signin", data={"api_key": "key-rev-a", "csrf_token": token})
        assert resp.status_code == 503
        assert "Service indisponible" in resp.text and dead in resp.text
        assert "Traceback" not in resp.text
        assert client.get("/healthz").text == "ok"


def _wait_run(stack: Stack, name: str, states: set[int], key: str = "key-rev-a") -> Any:
    import time

    from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc

    deadline = time.monotonic() + 180
    with stack.channel() as ch:
        stub = wf_grpc.WorkflowServiceStub(ch)
        while True:
            run = stub.GetRun(wf_pb.GetRunRequest(name=name), metadata=md(key), timeout=30).run
            if run.state in states or time.monotonic() > deadline:
                return run
            time.sleep(0.3)


def test_dossier_run_started_approved_then_amended(
    stack: Stack, new_page: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
    from docfactory.workflows.v1 import workflows_service_pb2_grpc as wf_grpc
    from tests.workflows import dossiers
    from tests.workflows.conftest import create_dossier_blocking

    files = dossiers.financement(tmp_path_factory.mktemp("dossier"), amount="180 000,00 €")
    with stack.channel() as ch:
        dossier = create_dossier_blocking(ch, files, "key-ops")
    # an operator starts the run from the dossier page
    ops = new_page()
    sign_in(ops, stack.url, "key-ops")
    ops.goto(f"{stack.url}/dossiers")
    ops.get_by_role("link", name="Atelier Dupont").first.click()
    ops.get_by_label("Flux").fill("financement")
    ops.get_by_role("button", name="Lancer un traitement").click()
    run_id = ops.url.rsplit("/", 1)[-1]
    assert "Traitement lancé" in ops.locator(".flash").inner_text()
    run = _wait_run(stack, f"runs/{run_id}", {wf_pb.RUN_STATE_AWAITING_SIGNOFF})
    assert run.state == wf_pb.RUN_STATE_AWAITING_SIGNOFF and run.approvals_required == 2

    # reviewer A approves first (four-eyes: a second approval is needed)
    alice = new_page()
    sign_in(alice, stack.url, "key-rev-a")
    alice.goto(f"{stack.url}/inbox")
    alice.locator(f"a[data-run='{run_id}']").click()
    siren = alice.locator("tr[data-field='demande.siren']")
    assert dossiers.SIREN in (siren.locator("details.evidence mark").text_content() or "")
    alice.get_by_label("Approuver").check()
    alice.get_by_role("button", name="Enregistrer la décision").click()
    assert (
        "Première approbation par reviewer-alice" in alice.locator("#first-approval").inner_text()
    )

    # reviewer B sees who approved first, and amends the amount
    bob = new_page()
    sign_in(bob, stack.url, "key-rev-b")
    bob.goto(f"{stack.url}/runs/{run_id}")
    assert "reviewer-alice" in bob.locator("#first-approval").inner_text()
    bob.screenshot(path=str(IMG / "console-dossier.png"))
    bob.get_by_label("Modifier puis publier").check()
    bob.locator("input[name='amend:demande.montant_demande']").fill("120 000 €")
    bob.get_by_label("Commentaire").fill("Montant ramené au total du budget.")
    bob.get_by_role("button", name="Enregistrer la décision").click()
    assert "Modification enregistrée" in bob.locator(".flash").inner_text()
    assert "(1/2)" in bob.locator(".flash").inner_text()  # amended, then approved by bob

    with stack.channel() as ch:
        got = (
            wf_grpc.WorkflowServiceStub(ch)
            .GetRun(wf_pb.GetRunRequest(name=f"runs/{run_id}"), metadata=md("key-rev-b"))
            .run
        )
    amended = [d for d in got.result.decisions if d.kind == wf_pb.DECISION_KIND_AMEND]
    assert [(d.reviewer, dict(d.amendments)) for d in amended] == [
        ("reviewer-bob", {"demande.montant_demande": "120000.00"})
    ]
    log = AuditLog(make_engine(stack.settings.resolved_database_url))
    records = [
        (r.key_id, r.outcome, list(r.details.get("amended", [])))
        for r in log.records()
        if r.action == "DOSSIER_DECISION" and r.details.get("run_id") == run_id
    ]
    assert records == [
        ("reviewer-alice", "APPROVE", []),
        ("reviewer-bob", "AMEND", ["demande.montant_demande"]),
        ("reviewer-bob", "APPROVE", []),
    ]
    # the amended value reaches the dossier's run once re-checked
    for _ in range(100):
        bob.goto(f"{stack.url}/runs/{run_id}")
        value = bob.locator("tr[data-field='demande.montant_demande'] td.value").inner_text()
        if value == "120000.00":
            break
        bob.wait_for_timeout(300)
    assert value == "120000.00"
    assert "reviewer-bob" in bob.locator("tr[data-field='demande.montant_demande']").inner_text()
    # a dossier that does not exist is a 404 page
    assert bob.goto(f"{stack.url}/dossiers/{dossier.dossier_id}x").status == 404


def test_jobs_live_progress_and_failures_per_object(stack: Stack, new_page: Any) -> None:
    ok = stack.upload_background("note-cse.txt", "Le comité social se réunit chaque mois.".encode())
    bad = stack.upload_background("rapport.pdf", b"%PDF-1.4\n this is not a PDF body\n%%EOF")
    page = new_page()
    sign_in(page, stack.url, "key-ops")
    page.goto(f"{stack.url}/jobs/{ok.removeprefix('jobs/')}")
    # the progress part refreshes itself (htmx) until the job ends: no reload here
    expect(page.locator("#job-state")).to_have_attribute("data-state", "SUCCEEDED", timeout=120_000)
    assert page.locator("#job-progress[hx-trigger]").count() == 0  # polling stops at the end
    progress = page.locator("#job-progress").inner_text()
    assert page.locator("table.counts td").first.inner_text() == "1", progress
    page.goto(f"{stack.url}/jobs/{bad.removeprefix('jobs/')}")
    expect(page.locator("#job-state")).to_have_attribute(
        "data-state", re.compile("SUCCEEDED|FAILED"), timeout=180_000
    )
    failures = page.locator("#job-progress table").nth(1)
    assert "rapport.pdf" in failures.inner_text()
    assert failures.locator("code").first.inner_text().strip()  # the reason is shown
    page.goto(f"{stack.url}/jobs")
    assert page.locator(f"a[href='/jobs/{bad.removeprefix('jobs/')}']").count() == 1
    page.screenshot(path=str(IMG / "console-jobs.png"), full_page=True)


def test_proxy_header_sign_in_and_secure_cookie_over_tls(stack: Stack) -> None:
    from starlette.testclient import TestClient

    from docfactory.console.app import ConsoleConfig, create_app

    app = create_app(ConsoleConfig(address=stack.grpc_address, auth_header="X-Forwarded-Api-Key"))
    with TestClient(app, base_url="https://console.test", follow_redirects=False) as client:
        signed = client.get("/signin?next=/inbox", headers={"X-Forwarded-Api-Key": "key-rev-b"})
        assert signed.status_code == 303 and signed.headers["location"] == "/inbox"
        (cookie,) = [
            c for c in signed.headers.get_list("set-cookie") if c.startswith("docfactory_console=")
        ]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        inbox = client.get("/inbox")
        assert inbox.status_code == 200 and "reviewer-bob" in inbox.text
        # an open redirect is not possible through ?next=
        other = client.get("/signin?next=//evil.example/", headers={"X-Forwarded-Api-Key": "x"})
        assert other.status_code == 401  # wrong key: refused, stays on the sign-in page
        again = client.get(
            "/signin?next=//evil.example/", headers={"X-Forwarded-Api-Key": "key-rev-b"}
        )
        assert again.headers["location"] == "/"
    # without the setting, the header is ignored
    plain = create_app(ConsoleConfig(address=stack.grpc_address))
    with TestClient(plain, base_url="http://console.test", follow_redirects=False) as client:
        page = client.get("/signin", headers={"X-Forwarded-Api-Key": "key-rev-b"})
        assert page.status_code == 200 and "Secure" not in page.headers.get("set-cookie", "")
