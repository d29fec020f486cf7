"""The web console: a Starlette application rendering Jinja2 pages, htmx for the live parts.

It reaches the services only through their gRPC APIs (:mod:`docfactory.console.backend`) with
the signed-in person's key, so every page and decision goes through the same authentication,
policy and audit as the API. ``docfactory console`` runs it; without ``--address`` it first
starts the embedded default in-process, like the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from docfactory.console import i18n
from docfactory.console.auth import (
    COOKIE,
    PERMISSIONS,
    PRE_COOKIE,
    AuditSink,
    Session,
    SessionStore,
    SignInAudit,
    SignInLimits,
    SignInThrottle,
    SignInTokens,
    foreign_origin,
    safe_next,
)
from docfactory.console.backend import Backend, ServiceError

log = logging.getLogger("docfactory.console")

HERE = Path(__file__).resolve().parent
LANG_COOKIE = "docfactory_console_lang"

#: Navigation: (permission, path, label key).
NAV: tuple[tuple[str, str, str], ...] = (
    ("inbox", "/inbox", "inbox"),
    ("dossiers", "/dossiers", "dossiers"),
    ("ask", "/ask", "ask"),
    ("documents", "/documents", "documents"),
    ("jobs", "/jobs", "jobs"),
    ("usage", "/usage", "usage"),
    ("audit", "/audit", "audit"),
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ConsoleConfig:
    """Console settings. ``auth_header``: a header set by an authenticating reverse proxy that
    carries the person's API key (trusted only when configured; strip it at the proxy).
    ``cookie_secure``: "auto" (Secure when the request came over TLS), "always" or "never".
    ``signin_*``: failed sign-ins that lock an address or a key, the window they are counted
    in and how long the lock lasts. ``allowed_origins``: public origins of the console
    (``https://console.example``) accepted on the sign-in form besides the one the request
    reached (a reverse proxy that rewrites Host). ``audit_database_url``: the metadata database
    where failed sign-ins and lockouts are audited (empty: only logged)."""

    address: str
    session_ttl_seconds: float = 8 * 3600
    auth_header: str = ""
    cookie_secure: str = "auto"
    dossiers: bool = True
    tls: Any = None  # TlsConfig of the gRPC client side (None: plain text)
    max_message_bytes: int = 64 * 1024 * 1024
    signin_max_failures: int = 5
    signin_window_seconds: float = 300.0
    signin_lockout_seconds: float = 900.0
    allowed_origins: tuple[str, ...] = ()
    audit_database_url: str = ""
    # Given by the composition root (docfactory.cli): appends sign-in failures and lockouts to
    # the audit chain (console.auth.SignInAudit). None: they are only logged.
    audit_sink: AuditSink | None = None


class SignInRequired(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, permission: str) -> None:
        self.permission = permission


class CsrfRefused(Exception):
    pass


class BadForm(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


class Console:
    """Everything a request handler needs: backend, sessions, templates, settings."""

    def __init__(self, config: ConsoleConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.sessions = SessionStore(config.session_ttl_seconds)
        self.signin_tokens = SignInTokens()
        self.throttle = SignInThrottle(
            SignInLimits(
                max_failures=config.signin_max_failures,
                window_seconds=config.signin_window_seconds,
                lockout_seconds=config.signin_lockout_seconds,
            )
        )
        self.signin_audit = SignInAudit(config.audit_sink)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["fmt_time"] = fmt_time
        self.templates.env.globals["pct"] = pct

    # -- request helpers ---------------------------------------------------------------------

    def lang(self, request: Request) -> str:
        return i18n.pick(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language"),
        )

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def require(self, request: Request, permission: str) -> Session:
        """The person's session with the permission, else sign-in (redirect) or 403."""
        session = self.session(request)
        if session is None:
            raise SignInRequired()
        if not session.may(permission):
            raise Forbidden(permission)
        return session

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """The posted form, after its CSRF token is checked (CsrfRefused otherwise)."""
        try:
            raw = await request.form()
        except Exception as exc:
            raise BadForm(f"malformed form: {type(exc).__name__}") from None
        data = {k: v for k, v in raw.items() if isinstance(v, str)}
        if not session.check_csrf(data.get("csrf_token")):
            raise CsrfRefused()
        return data

    def secure(self, request: Request) -> bool:
        mode = self.config.cookie_secure
        return mode == "always" or (mode == "auto" and request.url.scheme == "https")

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status_code: int = 200,
        session: Session | None = None,
    ) -> Response:
        lang = self.lang(request)
        session = session if session is not None else self.session(request)
        nav = []
        if session is not None:
            nav = [(path, key) for perm, path, key in NAV if session.may(perm)]
            if not self.config.dossiers:
                nav = [n for n in nav if n[0] != "/dossiers"]
        ctx: dict[str, Any] = {
            "request": request,
            "t": i18n.translator(lang),
            "label": i18n.labeler(lang),
            "plural": i18n.pluralizer(lang),
            "reason": functools.partial(i18n.reason_text, lang),
            "lang": lang,
            "other_lang": "en" if lang == "fr" else "fr",
            "session": session,
            "csrf": session.csrf_token if session else "",
            "nav": nav,
            "path": request.url.path,
            "flashes": session.take_flashes() if session else [],
            "permissions": PERMISSIONS,
        }
        ctx.update(context or {})
        response = self.templates.TemplateResponse(request, template, ctx, status_code=status_code)
        if request.query_params.get("lang") in i18n.LANGS:
            response.set_cookie(
                LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict",
                secure=self.secure(request), httponly=True,
            )  # fmt: skip
        return response

    def error_page(
        self, request: Request, status_code: int, title_key: str, message: str
    ) -> Response:
        return self.render(
            request,
            "error.html",
            {"title_key": title_key, "message": message},
            status_code=status_code,
        )

    # -- sign-in -------------------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        """``GET /signin``: the form, with a pre-session and form token issued here (a cookie
        the browser brings is kept only when this process issued it)."""
        nxt = safe_next(request.query_params.get("next"))
        header = self.config.auth_header
        if header and request.headers.get(header):
            return await self._sign_in(request, request.headers[header].strip(), nxt)
        return self._signin_form(
            request, nxt, signed_out="out" in request.query_params, status_code=200
        )

    async def signin_submit(self, request: Request) -> Response:
        """``POST /signin``: same origin, then the server-issued token, then the throttle, then
        the key (``GetCaller`` with it)."""
        t = i18n.translator(self.lang(request))
        own = f"{request.url.scheme}://{request.url.netloc}"
        foreign = foreign_origin(
            own,
            request.headers.get("origin"),
            request.headers.get("referer"),
            self.config.allowed_origins,
        )
        if foreign is not None:
            log.warning("console: sign-in from a foreign origin refused: %r", foreign)
            return self.error_page(request, 403, "origin_title", t("origin", origin=foreign))
        try:
            raw = await request.form()
        except Exception as exc:
            raise BadForm(f"malformed form: {type(exc).__name__}") from None
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        if not self.signin_tokens.check(request.cookies.get(PRE_COOKIE), form.get("csrf_token")):
            raise CsrfRefused()
        key = form.get("api_key", "").strip()
        nxt = safe_next(form.get("next"))
        if not key:
            error = t("signin_failed", message=t("api_key"))
            return self._signin_form(request, nxt, error=error, status_code=400)
        return await self._sign_in(request, key, nxt)

    async def _sign_in(self, request: Request, key: str, nxt: str) -> Response:
        client = request.client.host if request.client else "unknown"
        fingerprint = self.throttle.fingerprint(key)
        wait = self.throttle.begin(client, fingerprint)
        if wait > 0:
            return self._too_many(request, wait)
        try:
            return await self._try_key(request, key, nxt, client, fingerprint)
        finally:
            self.throttle.end(client, fingerprint)

    async def _try_key(
        self, request: Request, key: str, nxt: str, client: str, fingerprint: str
    ) -> Response:
        try:
            caller = await self.backend.caller(key)
        except ServiceError as exc:
            if exc.code not in ("UNAUTHENTICATED", "INVALID_ARGUMENT"):
                raise
            locked = self.throttle.failed(client, fingerprint)
            who = {"client": client, "key_fingerprint": fingerprint}
            await self.signin_audit.record(
                "CONSOLE_SIGNIN_FAILED", exc.code, {**who, "reason": exc.reason}
            )
            if locked:
                seconds = self.config.signin_lockout_seconds
                await self.signin_audit.record(
                    "CONSOLE_SIGNIN_LOCKED",
                    "LOCKED",
                    {**who, "locked": ",".join(locked), "seconds": seconds},
                )
                return self._too_many(request, seconds)
            t = i18n.translator(self.lang(request))
            error = t("signin_failed", message=f"{exc.reason}: {exc.message}")
            return self._signin_form(request, nxt, error=error, status_code=401)
        self.throttle.succeeded(fingerprint)
        # A new session id at every sign-in; the one the browser held (if any) ends.
        self.sessions.end(request.cookies.get(COOKIE))
        session = self.sessions.create(key, caller)
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            COOKIE, session.session_id, max_age=int(self.config.session_ttl_seconds),
            httponly=True, samesite="strict", secure=self.secure(request), path="/",
        )  # fmt: skip
        response.delete_cookie(PRE_COOKIE)
        return response

    def _signin_form(
        self,
        request: Request,
        nxt: str,
        *,
        status_code: int,
        error: str = "",
        signed_out: bool = False,
    ) -> Response:
        pre = self.signin_tokens.pre_session(request.cookies.get(PRE_COOKIE))
        response = self.render(
            request,
            "signin.html",
            {
                "signin_csrf": self.signin_tokens.token(pre),
                "next": nxt,
                "signed_out": signed_out,
                "error": error,
            },
            status_code=status_code,
            session=None,
        )
        response.set_cookie(
            PRE_COOKIE, pre, max_age=int(self.signin_tokens.ttl), httponly=True,
            samesite="strict", secure=self.secure(request),
        )  # fmt: skip
        return response

    def _too_many(self, request: Request, seconds: float) -> Response:
        t = i18n.translator(self.lang(request))
        minutes = max(1, math.ceil(seconds / 60))
        message = t("too_many_one") if minutes == 1 else t("too_many", minutes=minutes)
        response = self.error_page(request, 429, "too_many_title", message)
        response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
        return response


def fmt_time(ts: Any) -> str:
    """A protobuf Timestamp or datetime as 'YYYY-MM-DD HH:MM UTC' ('' when unset)."""
    if ts is None:
        return ""
    if hasattr(ts, "ToDatetime"):
        if not ts.seconds and not ts.nanos:
            return ""
        ts = ts.ToDatetime(tzinfo=dt.UTC)
    if isinstance(ts, dt.datetime):
        return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(ts)


def pct(value: float) -> str:
    return f"{value * 100:.0f} %"


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def create_app(config: ConsoleConfig, backend: Backend | None = None) -> Starlette:
    from docfactory.console import routes

    console = Console(
        config, backend or Backend(config.address, config.max_message_bytes, tls=config.tls)
    )

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={_quote(target)}", status_code=303)
        return console.error_page(
            request, 401, "signin", i18n.translator(console.lang(request))("signin_required")
        )

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        t = i18n.translator(console.lang(request))
        needed = ", ".join(sorted(PERMISSIONS[exc.permission]))
        return console.error_page(request, 403, "forbidden_title", t("forbidden", needed=needed))

    async def on_csrf(request: Request, exc: Exception) -> Response:
        t = i18n.translator(console.lang(request))
        return console.error_page(request, 403, "csrf_title", t("csrf"))

    async def on_bad_form(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadForm)
        return console.error_page(request, 400, "bad_form_title", exc.message)

    async def on_service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        t = i18n.translator(console.lang(request))
        if exc.code == "NOT_FOUND":
            return console.error_page(request, 404, "not_found_title", t("not_found"))
        if exc.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            log.warning("console: service unavailable: %s", exc)
            return console.error_page(
                request, 503, "unavailable_title", t("unavailable", address=backend_address)
            )
        if exc.code == "UNAUTHENTICATED":
            console.sessions.end(request.cookies.get(COOKIE))
            return await on_sign_in_required(request, exc)
        lang = console.lang(request)
        if exc.code == "PERMISSION_DENIED":
            message = i18n.reason_text(lang, exc.reason, exc.message)
            return console.error_page(request, 403, "forbidden_title", message)
        if exc.code == "UNIMPLEMENTED":
            return console.error_page(request, 501, "error", t("unsupported", message=exc.message))
        status = 409 if exc.code in ("FAILED_PRECONDITION", "ABORTED", "ALREADY_EXISTS") else 400
        if exc.code in ("INTERNAL", "UNKNOWN", "DATA_LOSS"):
            status = 502
        return console.error_page(
            request, status, "error", i18n.reason_text(lang, exc.reason, exc.message)
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        t = i18n.translator(console.lang(request))
        if exc.status_code == 404:
            return console.error_page(request, 404, "not_found_title", t("not_found"))
        return console.error_page(request, exc.status_code, "error", str(exc.detail))

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("console: unexpected error on %s %s", request.method, request.url.path)
        t = i18n.translator(console.lang(request))
        return console.error_page(request, 500, "internal_title", t("internal"))

    backend_address = console.backend.address
    app = Starlette(
        routes=[
            *routes.build(console),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            SignInRequired: on_sign_in_required,
            Forbidden: on_forbidden,
            CsrfRefused: on_csrf,
            BadForm: on_bad_form,
            ServiceError: on_service_error,
            HTTPException: on_http,
            Exception: on_crash,
        },
        lifespan=_lifespan(console),
    )
    app.state.console = console
    return app


def _lifespan(console: Console) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.backend.close()

    return lifespan


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


async def serve_console(
    config: ConsoleConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    sockets: Sequence[socket.socket] | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the console with uvicorn until cancelled (or SIGINT/SIGTERM when run alone)."""
    import uvicorn

    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        lifespan="on",
    )
    server = _quiet_server(uv_config)
    if handle_signals:
        # SIGINT/SIGTERM end the serve loop normally (uvicorn's own handlers would re-raise the
        # signal at exit and skip the caller's clean-up, e.g. stopping the embedded server).
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    watcher = None
    if stop is not None:

        async def watch() -> None:
            await stop.wait()
            server.should_exit = True

        watcher = asyncio.ensure_future(watch())
    try:
        await server.serve(sockets=list(sockets) if sockets else None)
    finally:
        if watcher is not None:
            watcher.cancel()


def check_listener(host: str, *, tls: bool, insecure: bool) -> None:
    """Plain HTTP is served on a loopback address only: API keys are typed into the sign-in
    form and session cookies carry the person's rights. A non-loopback ``host`` without TLS is
    refused (ConfigError) unless ``insecure`` (``--insecure``, DOCFACTORY_INSECURE), then a
    warning is logged."""
    from docfactory.core.tls import is_loopback

    if tls or is_loopback(host):
        return
    if not insecure:
        from docfactory.core.errors import ConfigError

        raise ConfigError(
            f"refusing to serve the console on {host} over plain HTTP: API keys and session "
            "cookies would cross the network in clear. Serve HTTPS (--tls-cert and --tls-key), "
            "bind a loopback address (127.0.0.1, ::1) behind a TLS reverse proxy, or pass "
            "--insecure (DOCFACTORY_INSECURE=1) if the network is encrypted otherwise"
        )
    log.warning(
        "INSECURE: the console serves plain HTTP on %s (--insecure): API keys typed at sign-in "
        "and session cookies cross the network in clear; put TLS in front of it",
        host,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening (IPv6 when the host is one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from docfactory.core.errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _quiet_server(config: Any) -> Any:
    """A uvicorn.Server that leaves signals to its caller."""
    import uvicorn

    class Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Quiet(config)


def console_config_from_env(address: str, **overrides: Any) -> ConsoleConfig:
    """ConsoleConfig from ``DOCFACTORY_CONSOLE_*`` variables, then explicit overrides."""
    import os

    values: dict[str, Any] = {
        "address": address,
        "auth_header": os.environ.get("DOCFACTORY_CONSOLE_AUTH_HEADER", ""),
        "cookie_secure": os.environ.get("DOCFACTORY_CONSOLE_COOKIE_SECURE", "auto"),
        "session_ttl_seconds": float(
            os.environ.get("DOCFACTORY_CONSOLE_SESSION_SECONDS", 8 * 3600)
        ),
    }
    from docfactory.core.errors import ConfigError

    signin = (
        ("signin_max_failures", "DOCFACTORY_CONSOLE_SIGNIN_MAX_FAILURES", int),
        ("signin_window_seconds", "DOCFACTORY_CONSOLE_SIGNIN_WINDOW_SECONDS", float),
        ("signin_lockout_seconds", "DOCFACTORY_CONSOLE_SIGNIN_LOCKOUT_SECONDS", float),
    )
    for name, variable, kind in signin:
        raw = os.environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            number = kind(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a number, not {raw!r}") from None
        if not number > 0 or not math.isfinite(number):
            raise ConfigError(f"{variable} must be positive, not {raw!r}")
        values[name] = number
    origins = os.environ.get("DOCFACTORY_CONSOLE_ORIGINS", "")
    values["allowed_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
    values["audit_database_url"] = os.environ.get("DOCFACTORY_CONSOLE_AUDIT_DATABASE_URL", "")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["cookie_secure"] not in ("auto", "always", "never"):
        raise ConfigError("DOCFACTORY_CONSOLE_COOKIE_SECURE must be auto, always or never")
    return ConsoleConfig(**values)


async def run_console(
    settings: Any,
    *,
    address: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    auth_header: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure: bool = False,
    audit_sink: Callable[[str], AuditSink] | None = None,
) -> None:
    """``docfactory console``: the console on ``host:port``; without ``address`` it first starts
    the embedded default in-process (same gRPC path as the CLI) and stops it on exit. Plain HTTP
    on a non-loopback ``host`` is refused unless ``insecure`` (:func:`check_listener`)."""
    check_listener(host, tls=bool(certfile), insecure=insecure or settings.tls.insecure)
    running = None
    audit_url = None
    if not address:
        from docfactory.app import start_server

        running = await start_server(settings, port=0)
        address = running.address
        audit_url = settings.resolved_database_url  # same process: failed sign-ins audited
        key_file = settings.data_dir / "api-key"
        hint = f"; sign in with the key in {key_file}" if key_file.exists() else ""
        print(f"docfactory: embedded server on {address}{hint}", flush=True)
    try:
        config = console_config_from_env(
            address,
            auth_header=auth_header,
            tls=settings.tls,
            max_message_bytes=settings.server.max_message_bytes,
        )
        audit_url = config.audit_database_url or audit_url
        if audit_url and audit_sink is not None:
            config = replace(config, audit_sink=audit_sink(audit_url))
        scheme = "https" if certfile else "http"
        # Bound (and listening) before the line is printed: a client that reads it and
        # connects at once is queued, never refused.
        sock = listening_socket(host, port)
        print(f"docfactory: console on {scheme}://{host}:{port}/", flush=True)
        await serve_console(
            config,
            host=host,
            port=port,
            sockets=[sock],
            certfile=certfile,
            keyfile=keyfile,
            handle_signals=True,
        )
    finally:
        if running is not None:
            await running.stop(2.0)


async def serve_beside(
    main: Any,
    settings: Any,
    *,
    host: str,
    port: int,
    audit_sink: Callable[[str], AuditSink] | None = None,
) -> None:
    """``docfactory serve --console-port``: the console next to the gRPC server, in the same
    process, stopped when the server stops."""
    from docfactory.core.errors import ConfigError

    if not settings.server.port:
        raise ConfigError("--console-port needs a fixed gRPC port (--port), not 0")
    check_listener(host, tls=False, insecure=settings.tls.insecure)
    grpc_host = (
        settings.server.host if settings.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    )
    config = console_config_from_env(
        f"{grpc_host}:{settings.server.port}",
        tls=settings.tls,
        max_message_bytes=settings.server.max_message_bytes,
    )
    if audit_sink is not None:  # same process as the server: failed sign-ins audited
        url = config.audit_database_url or settings.resolved_database_url
        config = replace(config, audit_sink=audit_sink(url))
    sock = listening_socket(host, port)
    print(f"docfactory: console on http://{host}:{port}/", flush=True)
    stop = asyncio.Event()
    console = asyncio.ensure_future(
        serve_console(config, host=host, port=port, sockets=[sock], handle_signals=False, stop=stop)
    )
    try:
        await main
    finally:
        stop.set()  # uvicorn finishes its requests and its lifespan, then returns
        await asyncio.wait({console}, timeout=10)
        if not console.done():
            console.cancel()
