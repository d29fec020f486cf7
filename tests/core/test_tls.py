"""TLS / mTLS on a real docfactory server (grpc.aio on port 0) with real certificates (trustme):
the mTLS happy path through internal hops, wrong CA, expired certificate, wrong subject, a
client forging the internal attestation header, certificate rotation without restart, and the
refusals at start (plain-text bind on a public address, mtls_subject keys without mTLS)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.app import RunningServer, start_server
from docfactory.core import tls
from docfactory.core.auth import Principal
from docfactory.core.config import Settings, TlsConfig
from docfactory.core.errors import ConfigError
from tests.helpers import error_reason, upload

ORG = "Docfactory Test"


def _write(cert: trustme.LeafCert, folder: Path, name: str) -> tuple[Path, Path]:
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    return crt, key


def _subject(path: Path) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).subject.rfc4514_string()


@dataclass
class Pki:
    ca: trustme.CA
    ca_file: Path
    server: tuple[Path, Path]
    app: tuple[Path, Path]  # a client application's certificate
    intruder: tuple[Path, Path]  # same CA, another subject
    foreign: tuple[Path, Path]  # another CA
    expired: tuple[Path, Path]  # same CA, expired
    foreign_ca_file: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca, other = trustme.CA(organization_name=ORG), trustme.CA(organization_name="Elsewhere")
    ca_file, other_file = folder / "ca.crt", folder / "other-ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    other.cert_pem.write_to_path(str(other_file))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)

    def leaf(issuer: trustme.CA, cn: str, **kw: Any) -> trustme.LeafCert:
        return issuer.issue_cert(
            "127.0.0.1",
            "localhost",
            common_name=cn,
            organization_name=ORG,
            organization_unit_name="docfactory",
            **kw,
        )

    return Pki(
        ca=ca,
        ca_file=ca_file,
        server=_write(leaf(ca, "docfactory-api"), folder, "server"),
        app=_write(leaf(ca, "app-nord"), folder, "app"),
        intruder=_write(leaf(ca, "intruder"), folder, "intruder"),
        foreign=_write(leaf(other, "app-nord"), folder, "foreign"),
        expired=_write(
            leaf(ca, "app-nord", not_before=past, not_after=past + dt.timedelta(days=1)),
            folder,
            "expired",
        ),
        foreign_ca_file=other_file,
    )


def _h(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _policy(path: Path, bound_subject: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "tenants": [{"id": "nord"}],
                "api_keys": [
                    {"id": "app-plain", "tenant": "nord", "sha256": _h("key-plain")},
                    {
                        "id": "app-bound",
                        "tenant": "nord",
                        "sha256": _h("key-bound"),
                        "mtls_subject": bound_subject,
                    },
                ],
                "use_cases": [
                    {
                        "id": "uc",
                        "tenants": ["nord"],
                        "owner": "dpo@nord.example",
                        "purpose": "tests",
                        "allowed_collections": "*",
                        "max_classification": "RESTRICTED",
                        "allowed_models": "*",
                        "human_review": "optional",
                        "retention": "none",
                    }
                ],
            }
        )
    )
    return path


def _client(pki: Pki, cert: tuple[Path, Path] | None, ca: Path | None = None) -> grpc.aio.Channel:
    """A raw grpc channel (no docfactory pre-checks): what any client could send."""
    kw: dict[str, bytes] = {}
    if cert is not None:
        kw = {"certificate_chain": cert[0].read_bytes(), "private_key": cert[1].read_bytes()}
    creds = grpc.ssl_channel_credentials(root_certificates=(ca or pki.ca_file).read_bytes(), **kw)
    return grpc.aio.secure_channel(ADDRESS[0], creds)


ADDRESS: list[str] = [""]
PROBE: list[str] = [""]


@pytest.fixture
async def mtls_server(
    pki: Pki, make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[RunningServer]:
    policy = _policy(tmp_path / "policy.yaml", _subject(pki.app[0]))
    with socket.socket() as sock:  # a free port for the plain-text probe listener
        sock.bind(("127.0.0.1", 0))
        PROBE[0] = f"127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(
        policy_file=str(policy),
        tls={
            "cert": str(pki.server[0]),
            "key": str(pki.server[1]),
            "ca": str(pki.ca_file),
            "probe_listen": PROBE[0],
        },
    )
    running = await start_server(settings, port=0)
    ADDRESS[0] = running.address
    try:
        yield running
    finally:
        await running.stop(0.5)


async def _search(ch: grpc.aio.Channel, key: str, extra: tuple[tuple[str, str], ...] = ()) -> Any:
    stub = ans_grpc.AnsweringServiceStub(ch)
    return await stub.Search(
        ans_pb.SearchRequest(query="remboursement des frais de mission", use_case="uc"),
        metadata=(("x-api-key", key), *extra) if key else extra,
        timeout=30,
    )


async def _refused(ch: grpc.aio.Channel, key: str = "key-plain") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _search(ch, key)
    return info.value


@pytest.mark.slow
async def test_mtls_every_refusal_and_the_happy_path(
    pki: Pki, mtls_server: RunningServer, tmp_path: Path
) -> None:
    doc = tmp_path / "note.txt"
    doc.write_text("Procédure de remboursement des frais de mission : justificatifs sous 30 jours.")
    async with _client(pki, pki.app) as ch:
        # Upload: ingestion -> chunking and embedding are internal hops over mTLS, authenticated
        # by the server's certificate with the caller attested (no API key re-sent).
        up = await upload(ch, doc, key="key-plain")
        assert up.document.document_id
        hits = (await _search(ch, "key-plain")).results
        assert hits and "remboursement" in hits[0].text
        # A key bound to a certificate subject, presented with that certificate.
        assert (await _search(ch, "key-bound")).results

    # Wrong subject: a valid certificate of the same CA, not the one the key is bound to.
    async with _client(pki, pki.intruder) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _search(ch, "key-bound")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(info.value) == "MTLS_SUBJECT_MISMATCH"
        assert "CN=intruder" in (info.value.details() or "")
        # ... nor may it claim to be a docfactory service attesting a caller.
        forged = tls.encode_principal(Principal(tenant="nord", key_id="app-plain", api_key=""))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _search(ch, "", ((tls.PRINCIPAL_HEADER, forged),))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(info.value) == "ATTESTATION_NOT_TRUSTED"

    # No client certificate, another CA's certificate, an expired certificate: the handshake
    # itself is refused (the server requires a verified client certificate).
    for cert in (None, pki.foreign, pki.expired):
        async with _client(pki, cert) as ch:
            err = await _refused(ch)
            assert err.code() == grpc.StatusCode.UNAVAILABLE, (cert, err)
    # The client does not trust a server certificate of another CA.
    async with _client(pki, pki.app, ca=pki.foreign_ca_file) as ch:
        assert (await _refused(ch)).code() == grpc.StatusCode.UNAVAILABLE

    # Kubernetes' gRPC probes (plain text) reach Health on the probe listener, and nothing else.
    async with grpc.aio.insecure_channel(PROBE[0]) as ch:
        status = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _search(ch, "key-plain")
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # docfactory's own clients say why before connecting.
    expired = TlsConfig(cert=str(pki.expired[0]), key=str(pki.expired[1]), ca=str(pki.ca_file))
    with pytest.raises(ConfigError, match="expired on"):
        tls.channel_credentials(expired)
    foreign = TlsConfig(cert=str(pki.foreign[0]), key=str(pki.foreign[1]), ca=str(pki.ca_file))
    with pytest.raises(ConfigError, match="not in the CA bundle"):
        tls.channel_credentials(foreign)
    mismatched = TlsConfig(cert=str(pki.app[0]), key=str(pki.intruder[1]))
    with pytest.raises(ConfigError, match="does not match"):
        tls.channel_credentials(mismatched)


@pytest.mark.slow
async def test_certificates_rotate_without_restart(
    pki: Pki, mtls_server: RunningServer, tmp_path: Path
) -> None:
    """New files (a new CA, as in a CA rotation): new handshakes use them, the internal hop
    (answering -> embedding) follows, and a client trusting only the new CA gets in."""
    new_ca = trustme.CA(organization_name=ORG)
    new_ca_file = tmp_path / "new-ca.crt"
    new_ca.cert_pem.write_to_path(str(new_ca_file))
    new_server = new_ca.issue_cert(
        "127.0.0.1", "localhost", common_name="docfactory-api-2", organization_name=ORG
    )
    async with _client(pki, pki.app, ca=new_ca_file) as ch:
        assert (await _refused(ch)).code() == grpc.StatusCode.UNAVAILABLE
    # Rotation as cert-manager does it: the bundle trusts both CAs during the overlap.
    server_crt, server_key = pki.server
    bundle = pki.ca_file.read_bytes() + new_ca_file.read_bytes()
    new_server.private_key_pem.write_to_path(str(server_key))
    new_server.cert_chain_pems[0].write_to_path(str(server_crt))
    pki.ca_file.write_bytes(bundle)
    later = dt.datetime.now().timestamp() + 5
    for p in (server_crt, server_key, pki.ca_file):
        os.utime(p, (later, later))
    async with _client(pki, pki.app, ca=new_ca_file) as ch:
        assert (await _search(ch, "key-plain")).results is not None  # internal hop re-keyed too


async def test_refusals_at_start(
    pki: Pki, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # A public address without TLS is refused unless --insecure.
    with pytest.raises(ConfigError, match="without TLS"):
        await start_server(make_settings(server={"host": "0.0.0.0"}), port=0)
    # Keys bound to a client certificate need mTLS.
    policy = _policy(tmp_path / "policy.yaml", _subject(pki.app[0]))
    with pytest.raises(ConfigError, match="app-bound have an mtls_subject"):
        await start_server(make_settings(policy_file=str(policy)), port=0)
    server_only = {"cert": str(pki.server[0]), "key": str(pki.server[1])}
    with pytest.raises(ConfigError, match="app-bound have an mtls_subject"):
        await start_server(make_settings(policy_file=str(policy), tls=server_only), port=0)
    with pytest.raises(ConfigError, match="optional is not supported"):
        tls.client_auth(TlsConfig(cert="c", key="k", ca="a", client_auth="optional"))
    assert tls.is_loopback("127.0.0.1") and tls.is_loopback("[::1]")
    assert not tls.is_loopback("0.0.0.0")


def test_subjects_compare_by_attributes_not_spelling() -> None:
    assert tls.subjects_equal("CN=app-credit,O=Caisse Nord", "O=Caisse Nord, CN=app-credit")
    assert not tls.subjects_equal("CN=app-credit,O=Caisse Nord", "CN=app-credit,O=Caisse Sud")
    assert not tls.subjects_equal("CN=app-credit", None)
    assert not tls.subjects_equal("not a name", "not a name")


def test_service_key_attestation() -> None:
    ident = tls.ServiceIdentity(service_key="k" * 32)
    caller = Principal(tenant="nord", key_id="app", api_key="secret", roles=frozenset({"x"}))
    md = ident.outgoing(caller)
    assert ("x-api-key", "secret") not in md  # the caller's key is not re-sent
    back = ident.attested_principal(md, None)
    assert back is not None
    assert (back.tenant, back.key_id, back.roles) == ("nord", "app", frozenset({"x"}))
    wrong = [(k, "z" * 32 if k == tls.SERVICE_KEY_HEADER else v) for k, v in md]
    with pytest.raises(Exception, match="may only be set by docfactory services"):
        ident.attested_principal(wrong, None)
    # Without an identity of its own, a service forwards the key (development only).
    assert ("x-api-key", "secret") in tls.ServiceIdentity().outgoing(caller)


def test_dev_certificates_for_compose(tmp_path: Path) -> None:
    """The compose one-shot step's certificates pass docfactory's own checks, and a renewal
    re-issues the leaves under the same CA."""
    from docfactory.core.devcerts import make_dev_certs

    out = tmp_path / "certs"
    assert "ca.crt" in make_dev_certs(out, ["docfactory"])
    assert make_dev_certs(out) == []  # kept when present
    ca = (out / "ca.crt").read_bytes()
    for stem in ("server", "worker", "client"):
        crt, key = (out / f"{stem}.crt").read_bytes(), (out / f"{stem}.key").read_bytes()
        tls.check_certificate(crt, key, ca, where=stem)
    before = (out / "server.crt").read_bytes()
    make_dev_certs(out, ["docfactory"], renew=True)
    assert (out / "server.crt").read_bytes() != before and (out / "ca.crt").read_bytes() == ca
    cfg = TlsConfig(
        cert=str(out / "server.crt"), key=str(out / "server.key"), ca=str(out / "ca.crt")
    )
    assert tls.mtls(cfg) and tls.channel_credentials(cfg) is not None


@pytest.mark.slow
async def test_dossier_worker_searches_over_tls(pki: Pki, mtls_server: RunningServer) -> None:
    """The dossier worker's hop to Search (retrieval step) uses TLS and its own client
    certificate when configured; without them the TLS server cannot be reached."""
    import asyncio

    from docfactory.workflows.engine import GrpcSearcher

    def search(cfg: TlsConfig) -> grpc.StatusCode:
        searcher = GrpcSearcher(ADDRESS[0], "key-plain", cfg, timeout=10)
        try:
            searcher.search(
                tenant="nord", use_case="uc", query="frais de mission", collections=(), top_k=3
            )
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        finally:
            searcher.close()

    worker_tls = TlsConfig(cert=str(pki.app[0]), key=str(pki.app[1]), ca=str(pki.ca_file))
    reached = await asyncio.to_thread(search, worker_tls)
    # Through TLS the call reaches the server's authorization (a plain key may not act for
    # a tenant: refused there, not at the transport).
    assert reached != grpc.StatusCode.UNAVAILABLE, reached
    assert await asyncio.to_thread(search, TlsConfig()) == grpc.StatusCode.UNAVAILABLE
