"""Sign-in hardening of the console against a real server (policy, SQLite): failed sign-ins are
throttled per client address and per key (429 + Retry-After, the right key refused while
locked) and recorded in the audit chain without the key; the sign-in form's CSRF token is
issued by the server only and a foreign Origin/Referer is refused; a session id is never
reused across sign-ins; a console on a non-loopback address without TLS refuses to start
unless told ``--insecure``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from docfactory.cli.admin import signin_audit_sink
from docfactory.console.app import console_config_from_env, create_app
from docfactory.console.auth import COOKIE, PRE_COOKIE
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from tests.console.conftest import ROOT, Stack, make_settings

pytestmark = pytest.mark.slow

BASE = "http://testserver"
#: The sign-in form's token (a signed-in page also has the sign-out form's).
FORM_TOKEN = re.compile(r'action="/signin"[^>]*>\s*<input [^>]*name="csrf_token" value="([^"]+)"')
WRONG = "wrong-key-0123456789-do-not-store"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real docfactory server (its own console is not used: each test builds one)."""
    running = Stack(make_settings(tmp_path_factory.mktemp("signin"))).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def console(server: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Factory of TestClients on a fresh console app (own throttle), configured from the
    environment as ``docfactory console`` is; ``client`` is the client's address."""
    clients: list[TestClient] = []

    def factory(client: str = "203.0.113.7", lang: str = "fr", **env: str) -> TestClient:
        monkeypatch.setenv(
            "DOCFACTORY_CONSOLE_AUDIT_DATABASE_URL", server.settings.resolved_database_url
        )
        for name, value in env.items():
            monkeypatch.setenv(f"DOCFACTORY_CONSOLE_{name.upper()}", value)
        config = console_config_from_env(server.grpc_address)
        sink = signin_audit_sink(config.audit_database_url)  # as `docfactory console` does
        app = create_app(dataclasses.replace(config, audit_sink=sink))
        tc = TestClient(app, base_url=BASE, follow_redirects=False, client=(client, 40000))
        tc.headers["accept-language"] = lang
        tc.__enter__()
        clients.append(tc)
        return tc

    yield factory
    for tc in clients:
        tc.__exit__(None, None, None)


def _token(client: TestClient) -> str:
    page = client.get("/signin")
    assert page.status_code == 200
    found = FORM_TOKEN.search(page.text)
    assert found, page.text
    return found.group(1)


def _post(client: TestClient, key: str, token: str, **headers: str) -> Any:
    return client.post(
        "/signin",
        data={"api_key": key, "csrf_token": token, "next": "/"},
        headers={"origin": BASE, **headers},
    )


def _audit(server: Stack) -> list[Any]:
    log = AuditLog(make_engine(server.settings.resolved_database_url))
    return [r for r in log.records() if r.action.startswith("CONSOLE_SIGNIN")]


# -- rate limit, lockout, audit ---------------------------------------------------------------


def test_wrong_keys_lock_the_address_and_the_right_key_is_refused_while_locked(
    console: Any,
) -> None:
    client = console(client="203.0.113.10")
    token = _token(client)
    statuses = [_post(client, f"{WRONG}-{i}", token).status_code for i in range(7)]
    assert statuses[:4] == [401] * 4, statuses
    assert statuses[4:] == [429] * 3, statuses  # the fifth failure locks
    locked = _post(client, "key-rev-a", token)  # the right key, while locked
    assert locked.status_code == 429
    assert COOKIE not in locked.cookies
    retry = int(locked.headers["retry-after"])
    assert 850 <= retry <= 900
    assert "Trop de tentatives" in locked.text and "réessayez dans 15 minutes" in locked.text
    assert client.get("/").status_code == 303  # not signed in

    english = console(client="203.0.113.10", lang="en")  # another console, own counters
    token = _token(english)
    for i in range(5):
        last = _post(english, f"{WRONG}-{i}", token)
    assert last.status_code == 429
    assert "Too many attempts" in last.text and "try again in 15 minutes" in last.text


def test_another_address_is_not_locked_and_the_lock_ends(console: Any) -> None:
    client = console(client="203.0.113.20", signin_lockout_seconds="1.5")
    token = _token(client)
    for i in range(5):
        _post(client, f"{WRONG}-{i}", token)
    assert _post(client, "key-rev-a", token).status_code == 429
    time.sleep(1.6)
    signed = _post(client, "key-rev-a", token)
    assert signed.status_code == 303 and signed.cookies.get(COOKIE)


def test_one_key_tried_from_many_addresses_is_locked(console: Any) -> None:
    client = console()
    token = _token(client)
    statuses = []
    for i in range(6):
        client._transport.client = (f"198.51.100.{i}", 40000)  # type: ignore[attr-defined]
        statuses.append(_post(client, WRONG, token).status_code)
    assert statuses[:4] == [401] * 4 and statuses[4:] == [429, 429], statuses


def test_failures_and_lockouts_are_in_the_audit_chain_without_the_key(
    console: Any, server: Stack
) -> None:
    before = {r.seq for r in _audit(server)}
    client = console(client="203.0.113.30")
    token = _token(client)
    for i in range(6):
        _post(client, f"{WRONG}-{i}", token)
    new = [r for r in _audit(server) if r.seq not in before]
    failed = [r for r in new if r.action == "CONSOLE_SIGNIN_FAILED"]
    locks = [r for r in new if r.action == "CONSOLE_SIGNIN_LOCKED"]
    assert len(failed) == 5, [(r.action, r.details) for r in new]  # the 6th never reached a key
    assert len(locks) == 1
    for record in failed:
        assert record.details["client"] == "203.0.113.30"
        assert record.outcome == "UNAUTHENTICATED"
        assert re.fullmatch(r"[0-9a-f]{16}", record.details["key_fingerprint"])
    assert locks[0].details["client"] == "203.0.113.30"
    assert WRONG not in json.dumps([r.details for r in new]) + repr(new)
    report = AuditLog(make_engine(server.settings.resolved_database_url)).verify()
    assert report.ok, report


def test_concurrent_guesses_do_not_slip_past_the_limit(console: Any, server: Stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = console(client="203.0.113.70")
    token = _token(client)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(lambda i: _post(client, f"{WRONG}-{i}", token).status_code, range(32))
        )
    tried = [
        r
        for r in _audit(server)
        if r.action == "CONSOLE_SIGNIN_FAILED" and r.details["client"] == "203.0.113.70"
    ]
    assert len(tried) <= 5, statuses
    assert statuses.count(401) <= 4 and set(statuses) <= {401, 429}, statuses


# -- CSRF of the sign-in form, Origin, session id ---------------------------------------------


def test_a_self_planted_sign_in_cookie_is_not_a_csrf_token(console: Any) -> None:
    client = console(client="203.0.113.40")
    client.cookies.set(PRE_COOKIE, "planted-by-the-attacker")
    refused = _post(client, "key-rev-a", "planted-by-the-attacker")
    assert refused.status_code == 403 and COOKIE not in refused.cookies
    # the sign-in page does not adopt the planted value either: it issues its own
    page = client.get("/signin")
    issued = page.cookies[PRE_COOKIE]
    assert issued != "planted-by-the-attacker"
    token = FORM_TOKEN.findall(page.text)[0]
    assert "planted" not in token and token != issued
    client.cookies.clear()
    client.cookies.set(PRE_COOKIE, issued)
    assert _post(client, "key-rev-a", token).status_code == 303


def test_a_foreign_origin_or_referer_is_refused(console: Any) -> None:
    client = console(client="203.0.113.50")
    token = _token(client)
    for headers in (
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://testserver:8081"},  # another port is another origin
        {"origin": "http://testserver.evil.example"},
        {"origin": "", "referer": "http://evil.example/login-csrf.html"},
    ):
        refused = _post(client, "key-rev-a", token, **headers)
        assert refused.status_code == 403, headers
        assert COOKIE not in refused.cookies
        assert "autre site" in refused.text, refused.text
    english = console(client="203.0.113.51", lang="en")
    refused = _post(english, "key-rev-a", _token(english), origin="http://evil.example")
    assert refused.status_code == 403 and "another site" in refused.text
    # same origin (Origin, or only a same-origin Referer) signs in; so does the https page of
    # the same host when TLS ended at a proxy (the request arrived as http)
    assert _post(client, "key-rev-a", token).status_code == 303
    tls_proxy = console(client="203.0.113.53")
    signed = _post(tls_proxy, "key-rev-a", _token(tls_proxy), origin="https://testserver")
    assert signed.status_code == 303
    other = console(client="203.0.113.52")
    signed = _post(other, "key-rev-a", _token(other), origin="", referer=f"{BASE}/signin")
    assert signed.status_code == 303


def test_signing_in_again_gives_a_new_session_id_and_ends_the_old_one(console: Any) -> None:
    client = console(client="203.0.113.60")
    first = _post(client, "key-rev-a", _token(client))
    assert first.status_code == 303
    old = first.cookies[COOKIE]
    assert client.get("/").status_code == 200
    second = _post(client, "key-rev-b", _token(client))
    assert second.status_code == 303
    assert second.cookies[COOKIE] != old
    stale = TestClient(client.app, base_url=BASE, follow_redirects=False)
    stale.cookies.set(COOKIE, old)
    assert stale.get("/").status_code == 303  # the old session is gone


# -- plain HTTP on a non-loopback address ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
    return subprocess.Popen(
        [sys.executable, "-m", "docfactory.cli", "--address", "127.0.0.1:9", "console", *args],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_console_on_a_non_loopback_host_without_tls_refuses_to_start() -> None:
    proc = _cli("--host", "0.0.0.0", "--port", str(_free_port()))
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("docfactory console --host 0.0.0.0 served plain HTTP")
    assert proc.returncode == 2, (out, err)
    assert "refusing to serve the console on 0.0.0.0" in err and "--insecure" in err
    assert "console on" not in out


def test_insecure_flag_serves_with_a_loud_warning(tmp_path: Path) -> None:
    port = _free_port()
    proc = _cli("--host", "0.0.0.0", "--port", str(port), "--insecure")
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "console on" not in line:
            line = proc.stdout.readline()
            if not line:
                break
        assert f"console on http://0.0.0.0:{port}/" in line
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).text == "ok"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "WARNING" in err and "plain HTTP" in err


def test_listener_check(caplog: pytest.LogCaptureFixture) -> None:
    from docfactory.console.app import check_listener
    from docfactory.core.errors import ConfigError

    for host in ("127.0.0.1", "::1", "localhost", "[::1]", "127.0.0.2"):
        check_listener(host, tls=False, insecure=False)
    for host in ("0.0.0.0", "::", "192.0.2.4", "console.example"):
        with pytest.raises(ConfigError, match="--insecure"):
            check_listener(host, tls=False, insecure=False)
        check_listener(host, tls=True, insecure=False)
    with caplog.at_level(logging.WARNING, logger="docfactory.console"):
        check_listener("0.0.0.0", tls=False, insecure=True)
    assert "plain HTTP" in caplog.text


def test_console_beside_the_server_on_a_non_loopback_host_is_refused(tmp_path: Path) -> None:
    from docfactory.console.app import serve_beside
    from docfactory.core.errors import ConfigError

    settings = make_settings(tmp_path, server={"host": "127.0.0.1", "port": 1})

    async def main() -> None:
        await asyncio.sleep(0)

    body = main()
    with pytest.raises(ConfigError, match="--insecure"):
        asyncio.run(serve_beside(body, settings, host="0.0.0.0", port=_free_port()))
    body.close()
