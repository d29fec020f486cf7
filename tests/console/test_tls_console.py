"""The console reaches a server that requires TLS client certificates (mTLS), as in the
Kubernetes base: with its certificate it signs in; without TLS the page says the service is
unavailable (no stack trace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme
from starlette.testclient import TestClient

from docfactory.console.app import ConsoleConfig, create_app
from docfactory.core.config import TlsConfig
from tests.console.conftest import Stack, make_settings

pytestmark = pytest.mark.slow


def _leaf(ca: trustme.CA, cn: str, folder: Path) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost", common_name=cn, organization_name="Docfactory")
    crt, key = folder / f"{cn}.crt", folder / f"{cn}.key"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    return str(crt), str(key)


def _sign_in(config: ConsoleConfig, key: str) -> tuple[int, str]:
    with TestClient(create_app(config), base_url="http://console.test") as client:
        page = client.get("/signin")  # the form's token, issued by the server
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        token = found.group(1) if found else ""
        resp = client.post(
            "/signin", data={"api_key": key, "csrf_token": token}, follow_redirects=False
        )
        return resp.status_code, resp.text


def test_console_over_mtls(tmp_path: Path) -> None:
    ca = trustme.CA(organization_name="Docfactory")
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert, server_key = _leaf(ca, "docfactory-api", tmp_path)
    client_cert, client_key = _leaf(ca, "docfactory-console", tmp_path)
    tls = {"cert": server_cert, "key": server_key, "ca": str(ca_file), "client_auth": "require"}
    stack = Stack(make_settings(tmp_path, tls=tls)).start()
    try:
        client_tls = TlsConfig(cert=client_cert, key=client_key, ca=str(ca_file))
        status, _ = _sign_in(ConsoleConfig(address=stack.grpc_address, tls=client_tls), "key-rev-a")
        assert status == 303
        status, body = _sign_in(ConsoleConfig(address=stack.grpc_address), "key-rev-a")
        assert status == 503 and "Service indisponible" in body and "Traceback" not in body
    finally:
        stack.stop()
