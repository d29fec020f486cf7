"""The console as the analyst's and reviewers' workplace (issue 25), in a real browser (Debian
chromium through Playwright) against a real server, console and dossier worker processes:

- an analyst without any role creates a dossier by uploading its 5 files (3 chosen, 2 dropped,
  with an upload progress bar), starts it, and sees it progress to "awaiting sign-off" on the
  run page, with no command besides the running stack;
- two reviewers sign it off in the browser (four-eyes: the amount is above 150 000 EUR): the first
  "amends then releases" (amendment, re-draft, approval), the second approves; the decision form
  is above the fold at 1280x800;
- the dossier list shows it signed; the analyst sees the result;
- the new pages carry no untranslated enum; errors of the form (no file, a flow typo, an upload
  above the size limit) are sentences in the page, never a 500.

Screenshots go to DOCFACTORY_SCREENSHOTS_DIR when set (docs/img for the README)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from docfactory.console import i18n
from tests.console.conftest import IMG, ServedStack, make_settings, sign_in
from tests.console.test_dossier_console import FORM_TOKEN, untranslated

pytestmark = pytest.mark.slow

ANALYST, ALICE, BOB = "key-requester", "key-rev-a", "key-rev-b"
FR = i18n.STRINGS["fr"]
AWAITING = i18n.ENUMS["fr"]["run_state"]["AWAITING_SIGNOFF"]
SIGNED = i18n.ENUMS["fr"]["run_state"]["COMPLETED"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStack]:
    """``docfactory serve --console-port`` (the deployed shape: no other command runs the
    dossiers) with the console tests' policy, except that any key of the tenant may upload
    (no ``ingestion_requires_role``): the analyst has no role at all."""
    tmp = tmp_path_factory.mktemp("workplace")
    settings = make_settings(tmp)
    path = Path(settings.policy_file)
    policy = yaml.safe_load(path.read_text())
    policy["ingestion_requires_role"] = False
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    running = ServedStack(settings).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from tests.workflows import dossiers

    return dossiers.financement(tmp_path_factory.mktemp("files"), amount="180 000,00 €")


@pytest.fixture
def person(browser: Any) -> Iterator[Any]:
    """Pages at 1280x800, each in its own context (own cookies = own person)."""
    contexts: list[Any] = []

    def factory() -> Any:
        context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(180_000)  # a decision waits for the run's re-draft
        return page

    yield factory
    for context in contexts:
        context.close()


def _clean(page: Any) -> None:
    body = page.content()
    assert "Traceback" not in body and 'File "' not in body
    assert untranslated(body) == [], (page.url, untranslated(body))


def _drop(page: Any, paths: list[Path]) -> None:
    """Drops files on the drop zone, as a file manager does (a DataTransfer with the files)."""
    items = [{"name": p.name, "text": p.read_text()} for p in paths]
    transfer = page.evaluate_handle(
        """items => {
            const dt = new DataTransfer();
            for (const it of items)
                dt.items.add(new File([it.text], it.name, {type: "text/markdown"}));
            return dt;
        }""",
        items,
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})


def test_analyst_creates_two_reviewers_sign_the_analyst_sees_the_result(
    stack: ServedStack, person: Any, files: list[Path]
) -> None:
    # -- the analyst (no role) creates the dossier and starts it ------------------------------
    analyst = person()
    sign_in(analyst, stack.url, ANALYST)
    analyst.goto(f"{stack.url}/dossiers")
    _clean(analyst)
    analyst.get_by_role("link", name=FR["new_dossier"]).click()
    assert analyst.url.endswith("/dossiers/new")
    analyst.get_by_label(FR["display_name"]).fill("Atelier Dupont")
    analyst.get_by_label(FR["use_case"]).select_option("credit-pro")
    analyst.get_by_label(FR["flow"], exact=True).fill("financement")
    analyst.locator("#files").set_input_files([str(p) for p in files[:3]])
    _drop(analyst, files[3:])
    names = analyst.locator("#file-list li").evaluate_all("els => els.map(e => e.dataset.file)")
    assert sorted(names) == sorted(p.name for p in files), names
    _clean(analyst)
    analyst.screenshot(path=str(IMG / "console-dossier-new.png"), full_page=True)
    progress: list[str] = []
    analyst.expose_function("dfProgress", lambda value: progress.append(value))
    analyst.evaluate(
        """() => {
            const form = document.getElementById("new-dossier");
            new MutationObserver(() => window.dfProgress(form.dataset.progress || ""))
                .observe(form, {attributes: true, attributeFilter: ["data-progress"]});
        }"""
    )
    analyst.get_by_role("button", name=FR["create_and_start"]).click()
    analyst.wait_for_url(re.compile(r".*/runs/[^/]+$"))
    assert "100" in progress, progress  # the bar reached the end of the upload
    run_id = analyst.url.rsplit("/", 1)[-1]
    assert "Dossier créé avec 5 pièces" in analyst.locator(".flash").inner_text()
    # it progresses by itself (htmx refresh, then the whole page once it waits for sign-off)
    state = analyst.locator("#run-state-name")
    assert state.get_attribute("data-state") in ("QUEUED", "RUNNING", "AWAITING_SIGNOFF")
    for _ in range(600):
        if state.get_attribute("data-state") not in ("QUEUED", "RUNNING"):
            break
        analyst.wait_for_timeout(500)
    assert state.get_attribute("data-state") == "AWAITING_SIGNOFF"
    assert state.inner_text() == AWAITING
    assert analyst.locator("#decision-form").count() == 0  # the analyst never decides
    assert analyst.locator("#awaiting-help").count() == 1
    _clean(analyst)

    # -- reviewer A: summary and decision form above the fold; amends then releases ----------
    alice = person()
    sign_in(alice, stack.url, ALICE)
    alice.goto(f"{stack.url}/dossiers")
    alice.locator(f"a[data-run='{run_id}']").first.click()
    assert alice.url.endswith(f"/runs/{run_id}")
    form = alice.locator("#decision-form")
    box = form.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 800, box
    assert alice.locator("#summary-approvals").get_attribute("data-required") == "2"
    assert alice.locator("#summary-party").inner_text() == "Atelier Dupont SAS"
    assert alice.locator("#summary-amount").get_attribute("data-value") == "180000.00"
    assert "180" in alice.locator("#summary-amount").inner_text()
    assert alice.locator("#summary-blocking").get_attribute("data-count") == "0"
    assert alice.locator("#h-sources").count() == 1  # the sources once, not in the note too
    assert "## Sources" not in alice.locator(".draft").inner_text()
    evidence = alice.locator("tr[data-field='demande.siren'] details.evidence")
    assert not evidence.evaluate("d => d.open")  # on demand
    _clean(alice)
    alice.screenshot(path=str(IMG / "console-run.png"))
    alice.get_by_label(FR["amend"]).check()
    alice.locator("input[name='amend:demande.telephone']").fill("01 23 45 67 00")
    alice.get_by_label(FR["comment"]).fill("Téléphone du contact corrigé.")
    alice.get_by_role("button", name=FR["decide"]).click()
    flash = alice.locator(".flash").inner_text()
    assert "Modification enregistrée et approuvée (1/2)" in flash, flash
    assert alice.locator("#summary-approvals").get_attribute("data-approvals") == "1"
    assert (
        "01 23 45 67 00"
        in alice.locator("tr[data-field='demande.telephone'] td.value").inner_text()
    )
    _clean(alice)

    # -- reviewer B approves: signed off and released -------------------------------------------
    bob = person()
    sign_in(bob, stack.url, BOB)
    bob.goto(f"{stack.url}/runs/{run_id}")
    assert "reviewer-alice" in bob.locator("#first-approval").inner_text()
    bob.get_by_label(FR["approve"]).check()
    bob.get_by_role("button", name=FR["decide"]).click()
    assert FR["decided_signed"] in bob.locator(".flash").inner_text()
    assert bob.locator("#run-state-name").get_attribute("data-state") == "COMPLETED"
    assert bob.locator("#decision-form").count() == 0
    kinds = bob.locator("li[data-kind]").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds == ["AMEND", "APPROVE", "APPROVE"], kinds

    # -- the list shows it signed; the analyst sees the result ----------------------------------
    analyst.goto(f"{stack.url}/dossiers")
    row = analyst.locator("tr[data-dossier]").filter(has_text="Atelier Dupont")
    assert row.locator("[data-state]").get_attribute("data-state") == "signed"
    _clean(analyst)
    row.get_by_role("link").click()
    _clean(analyst)
    analyst.locator(f"tr[data-run='{run_id}'] a").click()
    assert analyst.locator("#run-state-name").inner_text() == SIGNED
    assert analyst.locator("tr[data-field='demande.siren']").count() == 1
    assert analyst.locator(".draft").inner_text().strip()
    # feedback where people read: on the signed run
    assert analyst.locator(f"form.feedback input[name='run'][value='{run_id}']").count() == 1
    _clean(analyst)


def _client(stack: ServedStack, key: str, max_message_bytes: int) -> TestClient:
    from docfactory.console.app import ConsoleConfig, create_app

    app = create_app(ConsoleConfig(address=stack.grpc_address, max_message_bytes=max_message_bytes))
    client = TestClient(app, base_url="http://testserver", follow_redirects=False)
    client.__enter__()
    client.headers["accept-language"] = "fr"
    found = FORM_TOKEN.search(client.get("/signin").text)
    assert found
    resp = client.post("/signin", data={"api_key": key, "csrf_token": found.group(1)})
    assert resp.status_code == 303, resp.text
    return client


def test_the_form_says_what_is_wrong_never_a_500(stack: ServedStack, files: list[Path]) -> None:
    import html

    client = _client(stack, ANALYST, 2 * 1024 * 1024)
    try:
        page = client.get("/dossiers/new")
        assert page.status_code == 200 and untranslated(page.text) == []
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        base = {"csrf_token": token.group(1), "display_name": "X", "use_case": "credit-pro"}
        one = [("files", (files[0].name, files[0].read_bytes(), "text/markdown"))]
        # no file: the form again, with the sentence (JSON for upload.js)
        resp = client.post("/dossiers/new", data={**base, "flow": "financement"})
        assert resp.status_code == 400 and "Ajoutez au moins un fichier" in html.unescape(resp.text)
        resp = client.post(
            "/dossiers/new",
            data={**base, "flow": "financement"},
            headers={"x-docfactory-upload": "1"},
        )
        assert resp.status_code == 400 and "Ajoutez au moins un fichier" in resp.json()["error"]
        # above the console's upload limit (from the gRPC message size): 413, with the limit
        big = [("files", ("gros.md", b"x" * (2 * 1024 * 1024), "text/markdown"))]
        resp = client.post("/dossiers/new", data={**base, "flow": "financement"}, files=big)
        text = html.unescape(resp.text)
        assert resp.status_code == 413 and "taille maximale" in text and "Mo au total" in text
        assert untranslated(resp.text) == []
        # a flow typo: the dossier exists, its page says why the run did not start and lets
        # its submitter start it
        resp = client.post("/dossiers/new", data={**base, "flow": "financment"}, files=one)
        assert resp.status_code == 303, resp.text
        page = client.get(resp.headers["location"])
        text = html.unescape(page.text)
        assert "Dossier créé, mais le traitement n'a pas démarré" in text
        assert "Flux « financment » inconnu." in text and 'action="/dossiers/' in text
        assert untranslated(page.text) == [], untranslated(page.text)
        # a use case that is not the tenant's: the reason in French
        resp = client.post(
            "/dossiers/new", data={**base, "use_case": "nope", "flow": "financement"}, files=one
        )
        assert resp.status_code in (400, 403) and untranslated(resp.text) == [], resp.text
        english = client.get("/dossiers/new?lang=en")
        assert english.status_code == 200 and "New dossier" in english.text
    finally:
        client.__exit__(None, None, None)
