"""Development certificates for TLS/mTLS (Docker Compose's one-shot ``dev-certs`` step).

``python -m docfactory.core.devcerts OUT_DIR [--name docfactory ...]`` writes, once:

- ``ca.crt`` / ``ca.key``: a private CA (10 years);
- ``server.crt`` / ``server.key``: the docfactory server (SANs: the given names, localhost,
  127.0.0.1), usable as client certificate on internal hops too (mTLS);
- ``worker.crt`` / ``worker.key`` and ``client.crt`` / ``client.key``: client certificates.

Existing files are kept (re-running is harmless); ``--renew`` re-issues the leaf certificates
from the same CA, which docfactory picks up without a restart. Not for production: use your PKI
or cert-manager (deploy/k8s/base/certificates.yaml).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORG = "docfactory-dev"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / f"{stem}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _ca(folder: Path, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if (folder / "ca.crt").exists() and (folder / "ca.key").exists():
        return _load_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("docfactory-dev-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(folder, "ca", cert, key)
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cn: str,
    names: Sequence[str],
    server: bool,
    now: dt.datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + (
        [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


def make_dev_certs(
    folder: Path, names: Sequence[str] = ("docfactory",), *, renew: bool = False, days: int = 90
) -> list[str]:
    """Create what is missing (or re-issue the leaves with ``renew``); the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    written = [] if (folder / "ca.crt").exists() else ["ca.crt", "ca.key"]
    ca = _ca(folder, now)
    server_names = [*dict.fromkeys([*names, "localhost", "127.0.0.1"])]
    for stem, cn, sans, server in (
        ("server", "docfactory-server", server_names, True),
        ("worker", "docfactory-worker", [], False),
        ("client", "docfactory-client", [], False),
    ):
        if renew or not (folder / f"{stem}.crt").exists():
            cert, key = _leaf(ca, cn, sans, server, now, days)
            _write(folder, stem, cert, key)
            written += [f"{stem}.crt", f"{stem}.key"]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m docfactory.core.devcerts", description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--name", action="append", help="server DNS name (repeatable)")
    p.add_argument("--renew", action="store_true", help="re-issue the leaf certificates")
    p.add_argument("--days", type=int, default=90)
    ns = p.parse_args(argv)
    written = make_dev_certs(ns.out, ns.name or ["docfactory"], renew=ns.renew, days=ns.days)
    print(f"dev certificates in {ns.out}: " + (", ".join(written) or "already present"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
