"""`docfactory console` alone on a fresh data folder: the embedded default starts in-process,
its key signs in, the session works without a policy, SIGTERM stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import ROOT

pytestmark = pytest.mark.slow


def test_console_command_on_the_embedded_default(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "docfactory.cli", "--data-dir", str(data), "console",
         "--port", str(port)],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "console on" in line:
                break
        assert any(f"console on http://127.0.0.1:{port}/" in x for x in lines), lines
        assert any(str(data / "api-key") in x for x in lines), lines
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
            assert client.get("/healthz").text == "ok"
            assert client.get("/inbox").status_code == 303  # to the sign-in page
            form = client.get("/signin")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token
            key = (data / "api-key").read_text().strip()
            signed = client.post("/signin", data={"api_key": key, "csrf_token": token.group(1)})
            assert signed.status_code == 303
            cookie = signed.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
            home = client.get("/")
            assert home.status_code == 200 and "Aucune politique" in home.text
            docs = client.get("/documents")
            assert docs.status_code == 200 and "Aucun document" in docs.text
            # without a policy, the review inbox says why it is empty
            inbox = client.get("/inbox")
            assert inbox.status_code == 200 and "relecture humaine demande" in inbox.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
