"""The embedded default's background server: started by the first ``docfactory search``,
``ask``, ``ingest`` or ``documents`` on a data directory, reused by the next ones, stopped after
``DOCFACTORY_DAEMON_IDLE_S`` seconds without a call (default 600) or by ``docfactory stop``.

A cold command then costs the client's imports and one call over a Unix domain socket instead
of loading the model, the index and the database in every process.

Files, in ``<data_dir>/daemon`` (mode 0700, so only this user can reach the socket):

- ``alive``: the running server holds an exclusive ``flock`` on it for its whole life and
  writes its pid there. The kernel releases the lock however the process ends (``kill -9``
  included), so a lock that can be taken means no server, whatever files are left behind.
- ``start.lock``: a CLI holds it while it starts a server, so two CLIs never start two.
- ``state.json``: the server's pid, socket and settings fingerprint (``DOCFACTORY_*``
  variables and the config file): a CLI whose settings differ stops it and starts another.
- ``server.sock`` (mode 0600), or, when that path is too long for a Unix socket, a socket of
  the same name in a private folder of the temporary directory (``docfactory-<uid>``, 0700).
- ``server.log``: the server's output (why it failed to start, when it did; the previous
  one kept as ``server.log.1`` past 1 MB).

``--no-daemon`` / ``DOCFACTORY_NO_DAEMON=1`` runs the command in-process as before; that path
(also used by ``dossier`` and ``eval-flow``), ``serve`` and ``console`` stop the background server
of their data directory first (one process owns the embedded index).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from docfactory.core.config import Settings

log = logging.getLogger(__name__)

IDLE_ENV = "DOCFACTORY_DAEMON_IDLE_S"
NO_DAEMON_ENV = "DOCFACTORY_NO_DAEMON"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 600.0
LOG_MAX_BYTES = 1024 * 1024
BUSY_WAIT_S = 120.0  # a live server with the same settings that does not answer is waited for
# Variables that do not change what the server does: not part of the fingerprint.
_NOT_SETTINGS = frozenset(
    {"DOCFACTORY_API_KEY", "DOCFACTORY_ADDRESS", "DOCFACTORY_DATA_DIR", NO_DAEMON_ENV, IDLE_ENV}
)
_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux (104 on macOS)


@dataclass(frozen=True)
class Paths:
    folder: Path
    alive: Path
    start_lock: Path
    state: Path
    log: Path
    socket: Path

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"


def paths(data_dir: Path) -> Paths:
    data_dir = data_dir.expanduser().resolve()
    folder = data_dir / "daemon"
    socket = folder / "server.sock"
    if len(str(socket)) > _SOCKET_MAX:
        digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
        socket = _private_tmp() / f"{digest}.sock"
    return Paths(
        folder=folder,
        alive=folder / "alive",
        start_lock=folder / "start.lock",
        state=folder / "state.json",
        log=folder / "server.log",
        socket=socket,
    )


def _private_tmp() -> Path:
    return Path(tempfile.gettempdir()) / f"docfactory-{os.getuid()}"


def _private_dir(path: Path) -> None:
    """Create ``path`` mode 0700, or check that an existing one is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
        raise SystemExit(f"docfactory: {path} is not a folder of this user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def fingerprint(env: Mapping[str, str]) -> str:
    """What the server's settings depend on, besides the data directory."""
    h = hashlib.sha256()
    for key in sorted(k for k in env if k.startswith("DOCFACTORY_") and k not in _NOT_SETTINGS):
        h.update(f"{key}={env[key]}\0".encode())
    config = env.get("DOCFACTORY_CONFIG")
    if config:
        with contextlib.suppress(OSError):
            h.update(Path(config).read_bytes())
    h.update(sys.executable.encode())
    return h.hexdigest()[:32]


def wanted(address: str | None, settings: Settings, no_daemon: bool) -> bool:
    """Whether a command on ``settings`` goes through the background server: the embedded
    default only (no remote server, no split services, no TLS files), unless refused."""
    if no_daemon or os.environ.get(NO_DAEMON_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    a = settings.addresses
    if address or a.ingestion or a.chunking or a.embedding or a.answering or a.index:
        return False
    t = settings.tls
    return not (t.cert or t.key or t.ca)


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def running_pid(data_dir: Path) -> int | None:
    """Pid of the data directory's live background server (0: alive, pid not written yet)."""
    p = paths(data_dir)
    try:
        fd = os.open(p.alive, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(raw) if raw.isdigit() else 0
        return None  # nobody holds it: no server (a crashed one left its files)
    finally:
        os.close(fd)


def _read_state(p: Paths) -> dict[str, Any]:
    try:
        state = json.loads(p.state.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _serving(p: Paths, timeout: float) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if not p.socket.exists():
        return False
    with grpc.insecure_channel(p.address) as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(r.status == health_pb2.HealthCheckResponse.SERVING)


def _usable(p: Paths, fp: str) -> bool:
    state = _read_state(p)
    return (
        state.get("fingerprint") == fp
        and state.get("socket") == str(p.socket)
        and running_pid(p.folder.parent) == state.get("pid")
        and _serving(p, 5.0)
    )


def ensure(settings: Settings) -> str:
    """The address (``unix:...``) of the data directory's background server; started (and
    waited for) when none runs, replaced when it runs with other settings or does not answer."""
    p = paths(settings.data_dir)
    fp = fingerprint(os.environ)
    if _usable(p, fp):
        return p.address
    _private_dir(p.folder)
    if p.socket.parent != p.folder:
        _private_dir(p.socket.parent)
    with _flocked(p.start_lock):
        pid = running_pid(settings.data_dir)
        state = _read_state(p)
        if pid and state.get("pid") == pid and state.get("fingerprint") == fp:
            # started by another CLI meanwhile, or busy (a large ingest): wait, do not replace
            deadline = time.monotonic() + BUSY_WAIT_S
            while time.monotonic() < deadline and running_pid(settings.data_dir) == pid:
                if _serving(p, 5.0):
                    return p.address
                time.sleep(0.2)
        stop(settings.data_dir)  # other settings, exiting, or not answering for minutes
        _spawn(settings, p)
    return p.address


def _spawn(settings: Settings, p: Paths) -> None:
    env = {**os.environ, "DOCFACTORY_DATA_DIR": str(settings.data_dir.expanduser().resolve())}
    with contextlib.suppress(OSError):
        if p.log.stat().st_size > LOG_MAX_BYTES:  # one previous log is kept
            p.log.replace(p.log.with_suffix(".log.1"))
    with p.log.open("ab") as out:
        os.chmod(p.log, 0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", "daemon"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # not killed with the terminal or the CLI's process group
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = p.log.read_text(errors="replace")[-3000:]
            raise SystemExit(
                f"docfactory: the background server exited ({code}) while starting "
                f"(log {p.log}; --no-daemon runs in-process):\n{tail}"
            )
        state = _read_state(p)
        if state.get("pid") == proc.pid and _serving(p, 2.0):
            return
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"docfactory: the background server did not start in time (log {p.log})")


def stop(data_dir: Path, timeout: float = 30.0) -> int | None:
    """Stop the data directory's background server (SIGTERM, then SIGKILL after ``timeout``);
    its pid, or None when none was running. Stale files of a dead one are removed."""
    p = paths(data_dir)
    pid = running_pid(data_dir)
    if pid is None:
        _remove_stale(p)
        return None
    deadline = time.monotonic() + 5.0
    while pid == 0 and time.monotonic() < deadline:  # starting: its pid comes next
        time.sleep(0.05)
        pid = running_pid(data_dir)
    if not pid:
        _remove_stale(p)
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_pid(data_dir) is not None:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
        time.sleep(0.05)
    _remove_stale(p)
    return pid


def _remove_stale(p: Paths) -> None:
    for f in (p.socket, p.state):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


class Activity(grpc.aio.ServerInterceptor):
    """Counts calls in flight and the time of the last one ending: idle means none in flight
    for the whole idle period (a long ``ask`` or upload is never cut)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last

    def _enter(self) -> None:
        self.in_flight += 1
        self.last = time.monotonic()

    def _exit(self) -> None:
        self.in_flight -= 1
        self.last = time.monotonic()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.last = time.monotonic()
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        from docfactory.core.interceptors import rewrap

        behavior = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )
        wrap = self._stream if handler.response_streaming else self._unary
        return rewrap(handler, wrap(behavior), handler.request_deserializer)

    def _unary(self, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: Any) -> Any:
            self._enter()
            try:
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result
            finally:
                self._exit()

        return call

    def _stream(self, behavior: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            self._enter()
            try:
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                elif inspect.isawaitable(result):  # writes through context.write()
                    await result
                else:
                    for item in result:
                        yield item
            finally:
                self._exit()

        return call


def idle_seconds() -> float:
    raw = os.environ.get(IDLE_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_IDLE_S
    except ValueError:
        raise SystemExit(f"docfactory: {IDLE_ENV}={raw!r} is not a number of seconds") from None


async def run(settings: Settings) -> int:
    """``docfactory daemon`` (started by the CLI): serve every service on the data directory's
    socket until SIGTERM/SIGINT or the idle time passes."""
    from docfactory.app import SERVICES, start_server

    p = paths(settings.data_dir)
    _private_dir(p.folder)
    if p.socket.parent != p.folder:
        _private_dir(p.socket.parent)
    idle_s = idle_seconds()
    fd = os.open(p.alive, os.O_RDWR | os.O_CREAT, 0o600)
    for attempt in range(40):  # a CLI checking for a server holds it shared for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 39:
                os.close(fd)
                print("docfactory: a background server already runs here", flush=True)
                return 0
            await asyncio.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _remove_stale(p)  # a killed server's socket would make the bind fail
    activity = Activity()
    old_umask = os.umask(0o177)  # the socket file is created 0600
    try:
        running = await start_server(
            settings, SERVICES, unix_socket=p.socket, interceptors=[activity]
        )
    finally:
        os.umask(old_umask)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    reason = "signal"
    try:
        os.chmod(p.socket, 0o600)
        tmp = p.state.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "socket": str(p.socket),
                    "fingerprint": fingerprint(os.environ),
                    "idle_s": idle_s,
                    "started": time.time(),
                }
            )
        )
        tmp.replace(p.state)
        print(f"docfactory: background server {os.getpid()} on {p.address}", flush=True)
        while not stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=min(5.0, max(0.2, idle_s / 4)))
            if activity.idle_for() >= idle_s:
                reason = f"idle for {idle_s:g} s"
                # New commands start another server from now on; a command that found this
                # one an instant ago still gets its call served (then the grace period).
                _remove_stale(p)
                await asyncio.sleep(1.0)
                break
        print(f"docfactory: background server {os.getpid()} stopping ({reason})", flush=True)
    finally:
        _remove_stale(p)
        await running.stop(settings.server.grace_seconds)
    # ``fd`` stays open: the lock goes with the process itself, so whoever waits on it (``stop``)
    # knows the process has exited, not only that it began to.
    return 0
