"""TLS and mTLS for every gRPC hop, and the identity of docfactory's own services.

Server side: :func:`bind` adds the listening port, with TLS when ``DOCFACTORY_TLS_CERT`` and
``DOCFACTORY_TLS_KEY`` are set (client certificates verified against ``DOCFACTORY_TLS_CA`` when
``client_auth`` is ``require``). The certificates are re-read when their files change (gRPC's
dynamic credentials ask :class:`_Reloader` on every new handshake; it only compares mtimes), so
cert-manager can rotate them without a restart. Without TLS, a non-loopback address is refused
unless ``--insecure`` (``DOCFACTORY_INSECURE``) is given.

Client side: :func:`aio_channel` / :func:`sync_channel` open TLS channels with the CA (and this
process's certificate as client certificate under mTLS).

Internal hops: a docfactory service calling another one does not re-send the end user's API
key. It sends the already-authenticated caller as an attested header
(:data:`PRINCIPAL_HEADER`), which a server accepts only from a trusted internal peer: a client
certificate whose subject is one of ``DOCFACTORY_TLS_INTERNAL_SUBJECTS`` (default: the subject
of the server's own certificate), or the services' shared key ``DOCFACTORY_SERVICE_KEY``. The
all-in-one server (which only calls itself) uses a random per-process key.
"""

from __future__ import annotations

import base64
import contextvars
import datetime as dt
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from docfactory.core.auth import Principal
from docfactory.core.config import TlsConfig
from docfactory.core.errors import ConfigError, PermissionDenied

log = logging.getLogger("docfactory.tls")

#: The end user a docfactory service acts for, set on internal hops (base64url JSON).
PRINCIPAL_HEADER = "x-docfactory-principal"
#: The services' shared key (internal hops without a client certificate).
SERVICE_KEY_HEADER = "x-docfactory-service-key"

CLIENT_AUTH_MODES = ("require", "none")


# -- subjects ------------------------------------------------------------------------------


def normalize_subject(subject: str) -> tuple[tuple[str, str], ...] | None:
    """An RFC 4514 distinguished name as a sorted tuple of (OID, value); None if unparsable.

    Order and spacing do not matter: ``CN=a,O=B`` equals ``O=B, CN=a``.
    """
    try:
        name = x509.Name.from_rfc4514_string(re.sub(r"(?<!\\),\s+", ",", subject.strip()))
    except ValueError:
        return None
    pairs = []
    for attr in name:
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
        pairs.append((attr.oid.dotted_string, value.strip()))
    return tuple(sorted(pairs)) or None


def subjects_equal(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    na, nb = normalize_subject(a), normalize_subject(b)
    return na is not None and na == nb


def peer_subject(context: grpc.aio.ServicerContext) -> str | None:
    """The verified client certificate's subject of this call (mTLS), else None."""
    try:
        auth = context.auth_context()
    except Exception:  # pragma: no cover - no auth context on this transport
        return None
    values = auth.get("x509_subject") or []
    return values[0].decode("utf-8", "replace") if values else None


# -- settings checks ------------------------------------------------------------------------


def enabled(cfg: TlsConfig) -> bool:
    return bool(cfg.cert or cfg.key)


def client_auth(cfg: TlsConfig) -> str:
    mode = (cfg.client_auth or ("require" if cfg.ca else "none")).strip().lower()
    if mode == "optional":
        raise ConfigError(
            "DOCFACTORY_TLS_CLIENT_AUTH=optional is not supported: gRPC Python servers either "
            "require a verified client certificate or do not ask for one; use 'require' (mTLS) "
            "or 'none' (server-only TLS, internal hops then use DOCFACTORY_SERVICE_KEY)"
        )
    if mode not in CLIENT_AUTH_MODES:
        raise ConfigError(
            f"DOCFACTORY_TLS_CLIENT_AUTH={mode!r}: expected one of {', '.join(CLIENT_AUTH_MODES)}"
        )
    if mode == "require" and not cfg.ca:
        raise ConfigError(
            "DOCFACTORY_TLS_CLIENT_AUTH=require needs DOCFACTORY_TLS_CA (the CA bundle that "
            "signs client certificates)"
        )
    return mode


def mtls(cfg: TlsConfig) -> bool:
    return enabled(cfg) and client_auth(cfg) == "require"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path} is not readable: {exc}") from exc


def _certificates(pem: bytes, path: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate ({exc})") from exc
    return certs


def check_certificate(
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes | None,
    *,
    where: str,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Refuse, with the reason, a certificate that is expired, not yet valid, does not match
    its key, or is not signed by the CA bundle. Returns the leaf certificate."""
    moment = now or dt.datetime.now(dt.UTC)
    leaf = _certificates(cert_pem, where)[0]
    if leaf.not_valid_after_utc <= moment:
        raise ConfigError(
            f"{where}: certificate {leaf.subject.rfc4514_string()!r} expired on "
            f"{leaf.not_valid_after_utc.isoformat()}"
        )
    if leaf.not_valid_before_utc > moment:
        raise ConfigError(
            f"{where}: certificate {leaf.subject.rfc4514_string()!r} is not valid before "
            f"{leaf.not_valid_before_utc.isoformat()}"
        )
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: private key is not a readable PEM key ({exc})") from exc
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cert_pub = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != cert_pub:
        raise ConfigError(f"{where}: the private key does not match the certificate")
    if ca_pem:
        cas = _certificates(ca_pem, f"{where} CA")
        chain = _certificates(cert_pem, where)
        issuers = {c.subject for c in [*cas, *chain[1:]]}
        if leaf.issuer not in issuers:
            raise ConfigError(
                f"{where}: certificate {leaf.subject.rfc4514_string()!r} is issued by "
                f"{leaf.issuer.rfc4514_string()!r}, which is not in the CA bundle"
            )
    return leaf


def own_subject(cfg: TlsConfig) -> str | None:
    if not cfg.cert:
        return None
    return _certificates(_read(cfg.cert, "certificate"), cfg.cert)[0].subject.rfc4514_string()


def check_policy_subjects(keys: Iterable[tuple[str, str | None]], cfg: TlsConfig) -> None:
    """Policy keys with ``mtls_subject`` can only ever match under mTLS: refuse them at load
    when this server does not verify client certificates."""
    bound = sorted(kid for kid, subject in keys if subject)
    if bound and not mtls(cfg):
        raise ConfigError(
            f"policy keys {', '.join(bound)} have an mtls_subject, but this server does not "
            "verify client certificates: set DOCFACTORY_TLS_CERT, DOCFACTORY_TLS_KEY and "
            "DOCFACTORY_TLS_CA (client certificates required), or remove mtls_subject"
        )
    for kid, subject in keys:
        if subject and normalize_subject(subject) is None:
            raise ConfigError(f"policy key {kid}: mtls_subject {subject!r} is not an RFC 4514 name")


# -- server ---------------------------------------------------------------------------------


class _Reloader:
    """gRPC's certificate fetcher: a new configuration when a file's mtime changed."""

    def __init__(self, cfg: TlsConfig, require: bool) -> None:
        self._cfg = cfg
        self._require = require
        self._stamp = self._mtimes()
        self.reloads = 0

    def _paths(self) -> list[str]:
        return [p for p in (self._cfg.cert, self._cfg.key, self._cfg.ca) if p]

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(Path(p).stat().st_mtime_ns for p in self._paths())

    def configuration(self) -> Any:
        cert, key = _read(self._cfg.cert, "certificate"), _read(self._cfg.key, "private key")
        ca = _read(self._cfg.ca, "CA bundle") if self._cfg.ca else None
        check_certificate(cert, key, None, where=self._cfg.cert)
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca if self._require else None
        )

    def __call__(self) -> Any:
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return None
            config = self.configuration()
        except Exception as exc:  # keep serving with the current certificates
            log.warning("TLS certificates not reloaded: %s", exc)
            return None
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificates reloaded from %s", self._cfg.cert)
        return config


def server_credentials(cfg: TlsConfig) -> grpc.ServerCredentials:
    if not (cfg.cert and cfg.key):
        raise ConfigError("TLS needs both DOCFACTORY_TLS_CERT and DOCFACTORY_TLS_KEY")
    require = client_auth(cfg) == "require"
    cert, key = _read(cfg.cert, "certificate"), _read(cfg.key, "private key")
    check_certificate(cert, key, None, where=cfg.cert)
    reloader = _Reloader(cfg, require)
    return grpc.dynamic_ssl_server_credentials(
        reloader.configuration(), reloader, require_client_authentication=require
    )


def is_loopback(host: str) -> bool:
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def bind(server: grpc.aio.Server, host: str, port: int, cfg: TlsConfig) -> int:
    """Add the listening port (TLS when configured); the bound port."""
    address = f"{host}:{port}"
    if enabled(cfg):
        bound = server.add_secure_port(address, server_credentials(cfg))
    else:
        if not is_loopback(host) and not cfg.insecure:
            raise ConfigError(
                f"refusing to serve on {address} without TLS: set DOCFACTORY_TLS_CERT and "
                "DOCFACTORY_TLS_KEY (and DOCFACTORY_TLS_CA for mTLS), bind a loopback address, "
                "or pass --insecure (DOCFACTORY_INSECURE=1) if a mesh encrypts the traffic"
            )
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise ConfigError(f"cannot bind {address}")
    return int(bound)


async def start_probe_listener(health_servicer: Any, address: str) -> grpc.aio.Server:
    """A plain-text listener serving only ``grpc.health.v1.Health`` (the same servicer as the
    TLS port): Kubernetes' gRPC probes cannot speak TLS. Nothing else is reachable there."""
    from grpc_health.v1 import health_pb2_grpc

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(address) == 0:
        raise ConfigError(f"cannot bind the health probe listener {address}")
    await server.start()
    log.info("gRPC health probes (plain text, Health only) on %s", address)
    return server


# -- client ---------------------------------------------------------------------------------


def channel_credentials(cfg: TlsConfig) -> grpc.ChannelCredentials | None:
    """Credentials for channels to docfactory servers; None when TLS is off.

    Clients use TLS when a CA is set (or this process has a certificate); under mTLS this
    process's certificate is its client certificate."""
    if not (cfg.ca or enabled(cfg)):
        return None
    ca = _read(cfg.ca, "CA bundle") if cfg.ca else None
    if cfg.cert and cfg.key:
        cert, key = _read(cfg.cert, "certificate"), _read(cfg.key, "private key")
        check_certificate(cert, key, ca, where=cfg.cert)
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
    return grpc.ssl_channel_credentials(root_certificates=ca)


def _with_name(cfg: TlsConfig, options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    opts = list(options)
    if cfg.server_name:
        opts.append(("grpc.ssl_target_name_override", cfg.server_name))
    return opts


def aio_channel(
    target: str,
    cfg: TlsConfig,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    creds = channel_credentials(cfg)
    chain = list(interceptors) or None
    if creds is None:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=chain)
    return grpc.aio.secure_channel(
        target, creds, options=_with_name(cfg, options), interceptors=chain
    )


def sync_channel(
    target: str, cfg: TlsConfig, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    creds = channel_credentials(cfg)
    if creds is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, creds, options=_with_name(cfg, options))


def files_stamp(cfg: TlsConfig) -> tuple[float, ...]:
    """mtimes of the client TLS files (channels are reopened when they change)."""
    out = []
    for p in (cfg.cert, cfg.key, cfg.ca):
        if p:
            try:
                out.append(float(Path(p).stat().st_mtime_ns))
            except OSError:
                out.append(-1.0)
    return tuple(out)


# -- service identity -----------------------------------------------------------------------


def encode_principal(p: Principal) -> str:
    raw = json.dumps(
        {"t": p.tenant, "k": p.key_id, "r": sorted(p.roles), "o": p.on_behalf_of},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def decode_principal(value: str) -> Principal:
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
        tenant, key_id = str(data["t"]), str(data["k"])
        roles = frozenset(str(r) for r in data.get("r", ()))
        on_behalf = str(data.get("o", ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise PermissionDenied(
            f"malformed {PRINCIPAL_HEADER} header", reason="ATTESTATION_MALFORMED"
        ) from exc
    if not tenant or not key_id:
        raise PermissionDenied(
            f"{PRINCIPAL_HEADER} lacks tenant or key id", reason="ATTESTATION_MALFORMED"
        )
    return Principal(tenant=tenant, key_id=key_id, api_key="", roles=roles, on_behalf_of=on_behalf)


@dataclass(frozen=True)
class ServiceIdentity:
    """How this process proves to other docfactory services that it is one of them, and which
    peers it trusts to attest an end user."""

    service_key: str = ""  # sent and accepted in SERVICE_KEY_HEADER ("" = none)
    trusted_subjects: tuple[str, ...] = ()  # client-certificate subjects of internal peers
    client_certificate: bool = False  # this process presents a certificate on its calls
    # This process's certificate file: its current subject is trusted too (re-read when the
    # file changes, so a renewed certificate with a new subject keeps internal hops working).
    own_certificate: str = ""

    @property
    def attests(self) -> bool:
        """Internal hops carry the attested caller (not the caller's API key)."""
        return bool(self.service_key) or self.client_certificate

    def outgoing(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        if not self.attests:
            # No identity of our own (split services, no mTLS, no service key): forward the
            # caller's key as before. Documented as development-only.
            return principal.metadata()
        md: tuple[tuple[str, str], ...] = ((PRINCIPAL_HEADER, encode_principal(principal)),)
        if self.service_key:
            md += ((SERVICE_KEY_HEADER, self.service_key),)
        return md

    def trusted(self, metadata: Sequence[tuple[str, str | bytes]], subject: str | None) -> bool:
        if subject and self.client_certificate:
            own = _current_subject(self.own_certificate) if self.own_certificate else None
            if any(subjects_equal(subject, s) for s in (*self.trusted_subjects, own)):
                return True
        if self.service_key:
            for k, v in metadata:
                if k == SERVICE_KEY_HEADER:
                    given = v.decode() if isinstance(v, bytes) else v
                    return hmac.compare_digest(given.encode(), self.service_key.encode())
        return False

    def attested_principal(
        self, metadata: Sequence[tuple[str, str | bytes]], subject: str | None
    ) -> Principal | None:
        """The caller attested by an internal peer; None when the call carries no attestation.

        The header from anyone else is refused (a client must not choose its own tenant)."""
        value = ""
        for k, v in metadata:
            if k == PRINCIPAL_HEADER:
                value = v.decode() if isinstance(v, bytes) else v
        if not value:
            return None
        if not self.trusted(metadata, subject):
            raise PermissionDenied(
                f"{PRINCIPAL_HEADER} may only be set by docfactory services (a client "
                "certificate listed in DOCFACTORY_TLS_INTERNAL_SUBJECTS, or the service key)"
                + (f"; peer certificate {subject!r} is not one of them" if subject else ""),
                reason="ATTESTATION_NOT_TRUSTED",
                metadata={"peer_subject": subject or ""},
            )
        return decode_principal(value)


def service_identity(
    cfg: TlsConfig, *, service_key: str = "", calls_only_itself: bool
) -> ServiceIdentity:
    """This server's identity (``service_key``: DOCFACTORY_SERVICE_KEY). The all-in-one server
    gets a random per-process key when no shared one is configured (it only calls itself)."""
    subjects = tuple(s.strip() for s in cfg.internal_subjects.split(";") if s.strip())
    for s in subjects:
        if normalize_subject(s) is None:
            raise ConfigError(f"DOCFACTORY_TLS_INTERNAL_SUBJECTS: {s!r} is not an RFC 4514 name")
    key = service_key or (secrets.token_urlsafe(32) if calls_only_itself else "")
    identity = ServiceIdentity(
        service_key=key,
        trusted_subjects=subjects if mtls(cfg) else (),
        client_certificate=mtls(cfg),
        # Default: peers presenting this process's own certificate subject.
        own_certificate=cfg.cert if mtls(cfg) and not subjects else "",
    )
    if not identity.attests:
        log.warning(
            "internal calls forward the caller's API key: set DOCFACTORY_SERVICE_KEY or mTLS "
            "(DOCFACTORY_TLS_CERT/KEY/CA) so services authenticate as themselves"
        )
    return identity


_subjects: dict[str, tuple[int, str]] = {}


def _current_subject(path: str) -> str | None:
    """The subject of the certificate in ``path``, cached by mtime."""
    try:
        mtime = Path(path).stat().st_mtime_ns
        cached = _subjects.get(path)
        if cached is None or cached[0] != mtime:
            cert = _certificates(Path(path).read_bytes(), path)[0]
            cached = _subjects[path] = (mtime, cert.subject.rfc4514_string())
        return cached[1]
    except (OSError, ConfigError):
        return None


_identity: contextvars.ContextVar[ServiceIdentity | None] = contextvars.ContextVar(
    "docfactory_service_identity", default=None
)


def set_identity(identity: ServiceIdentity | None) -> None:
    """The identity of the server handling the current call (set by the interceptor)."""
    _identity.set(identity)


def outgoing_metadata(principal: Principal) -> tuple[tuple[str, str], ...]:
    """Credentials for a downstream call made for ``principal`` from the current request."""
    identity = _identity.get()
    return identity.outgoing(principal) if identity is not None else principal.metadata()
