"""Legacy office formats (.doc, .ppt, .xls, .rtf, .odp, .wpd, ...) converted to their modern
equivalents by LibreOffice running headless as a server (``unoserver``).

- A small pool of instances (``DOCFACTORY_CONVERTER_INSTANCES``, default 1), each one
  ``unoserver`` process with its own ``soffice`` and its own profile directory, started on first
  use. A conversion takes a free instance; one instance converts one file at a time.
- Every conversion has a deadline (``DOCFACTORY_CONVERTER_TIMEOUT``, default 60 s). A
  conversion that runs past it fails with ``CONVERSION_TIMEOUT`` and its instance is killed
  (the whole process group: unoserver, the soffice wrapper, soffice.bin) and replaced, so a file
  that hangs LibreOffice costs one deadline and nothing else.
- An instance is recycled after ``DOCFACTORY_CONVERTER_MAX_CONVERSIONS`` conversions (default
  200) or when its processes' resident memory passes ``DOCFACTORY_CONVERTER_MAX_RSS_MB``
  (default 1024), checked after each conversion.
- unoserver's server side imports LibreOffice's ``uno`` module, which Debian ships for the
  system interpreter (``python3-uno`` -> ``/usr/bin/python3``), not for the project's virtual
  environment. The server therefore runs under the first interpreter that can ``import uno``
  (``DOCFACTORY_UNO_PYTHON``, ``/usr/bin/python3``, LibreOffice's bundled ``program/python``),
  with only the ``unoserver`` package of this environment put on its path; this process talks to
  it over unoserver's XML-RPC socket (the client side needs no ``uno``).
- Where LibreOffice, a ``uno`` interpreter or unoserver is missing (or
  ``DOCFACTORY_CONVERTER=off``), :func:`converter_available` is false and the parser keeps
  refusing these formats with ``CONVERTER_UNAVAILABLE``.

LibreOffice is MPL-2.0, unoserver MIT: nothing GPL is required.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docfactory.core.errors import FailedPrecondition, Unavailable

# target extension by source kind: legacy formats become the modern format of their family
TARGETS = {
    # unstructured FileType names
    "DOC": "docx",
    "PPT": "pptx",
    "XLS": "xlsx",
    "RTF": "docx",
    # extensions unstructured does not recognise but LibreOffice reads
    ".dot": "docx",
    ".wpd": "docx",
    ".wps": "docx",
    ".sxw": "docx",
    ".fodt": "docx",
    ".abw": "docx",
    ".pps": "pptx",
    ".pot": "pptx",
    ".odp": "pptx",
    ".sxi": "pptx",
    ".fodp": "pptx",
    ".key": "pptx",
    ".xlt": "xlsx",
    ".ods": "xlsx",
    ".sxc": "xlsx",
    ".fods": "xlsx",
    ".numbers": "xlsx",
    ".wk1": "xlsx",
    ".dbf": "xlsx",
}


@dataclass(frozen=True)
class ConverterConfig:
    enabled: bool = True
    instances: int = 1
    timeout_s: float = 60.0
    max_conversions: int = 200
    max_rss_mb: int = 1024
    start_timeout_s: float = 90.0

    @classmethod
    def from_env(cls) -> ConverterConfig:
        env = os.environ
        return cls(
            enabled=env.get("DOCFACTORY_CONVERTER", "auto").lower() not in {"off", "0", "false"},
            instances=max(1, int(env.get("DOCFACTORY_CONVERTER_INSTANCES", "1"))),
            timeout_s=float(env.get("DOCFACTORY_CONVERTER_TIMEOUT", "60")),
            max_conversions=max(1, int(env.get("DOCFACTORY_CONVERTER_MAX_CONVERSIONS", "200"))),
            max_rss_mb=int(env.get("DOCFACTORY_CONVERTER_MAX_RSS_MB", "1024")),
        )


def soffice_path() -> str | None:
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.lru_cache(maxsize=1)
def uno_python() -> str | None:
    """An interpreter that can ``import uno`` (Debian's python3-uno, or LibreOffice's own)."""
    candidates = [os.environ.get("DOCFACTORY_UNO_PYTHON", ""), "/usr/bin/python3"]
    office = soffice_path()
    if office:
        candidates.append(str(Path(office).resolve().parent / "python"))
    for py in candidates:
        if not py or not os.access(py, os.X_OK):
            continue
        try:
            ok = subprocess.run(
                [py, "-c", "import uno"], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0:
            return py
    return None


def converter_available() -> bool:
    """LibreOffice, an interpreter with ``uno`` and the unoserver package are all present."""
    if not ConverterConfig.from_env().enabled:
        return False
    return (
        soffice_path() is not None
        and importlib.util.find_spec("unoserver") is not None
        and uno_python() is not None
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> Any:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


def _session_pids(sid: int) -> list[int]:
    """Processes of a session (an instance runs in its own session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 4 and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# Runs unoserver's server with documents loaded hidden: unoserver loads them visible, and in a
# headless soffice (7.4) some files (e.g. a .xls) then abort soffice.bin in a window callback.
_SERVER_BOOT = """
import os
import signal
import sys
import threading
import time

import uno  # noqa: F401 (installs the com.sun.star import hook)
from com.sun.star.beans import PropertyValue
from unoserver import converter, server


class _HiddenDesktop:
    def __init__(self, desktop):
        self._desktop = desktop

    def __getattr__(self, name):
        return getattr(self._desktop, name)

    def loadComponentFromURL(self, url, frame, flags, props):
        props = tuple(props) + (PropertyValue(Name="Hidden", Value=True),)
        return self._desktop.loadComponentFromURL(url, frame, flags, props)


_init = converter.UnoConverter.__init__


def _hidden_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.desktop = _HiddenDesktop(self.desktop)


converter.UnoConverter.__init__ = _hidden_init


def _orphan_watch(parent):
    # The docfactory process that started this server is gone (even SIGKILLed): take the whole
    # process group (this interpreter, soffice, soffice.bin) down with it.
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(os.getpgid(0), signal.SIGKILL)


threading.Thread(target=_orphan_watch, args=(os.getppid(),), daemon=True).start()
sys.exit(server.main())
"""


class _Instance:
    """One unoserver process (own session, own profile) and its soffice."""

    def __init__(self, python: str, office: str, workdir: Path) -> None:
        self.port = _free_port()
        uno_port = _free_port()
        while uno_port == self.port:
            uno_port = _free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="lo-profile-", dir=workdir))
        # Only the unoserver package on the system interpreter's path (not the whole venv).
        self._shim = Path(tempfile.mkdtemp(prefix="unoserver-path-", dir=workdir))
        spec = importlib.util.find_spec("unoserver")
        assert spec is not None and spec.origin is not None
        package = Path(spec.origin).parent
        (self._shim / "unoserver").symlink_to(package)
        for dist in package.parent.glob("unoserver-*.dist-info"):  # importlib.metadata version
            (self._shim / dist.name).symlink_to(dist)
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
        env["PYTHONPATH"] = str(self._shim)
        env["HOME"] = str(self.profile)
        self._log = (self.profile / "unoserver.log").open("wb")
        self.proc = subprocess.Popen(
            [
                python,
                "-c",
                _SERVER_BOOT,
                "--interface",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--uno-interface",
                "127.0.0.1",
                "--uno-port",
                str(uno_port),
                "--executable",
                office,
                "--user-installation",
                str(self.profile / "user"),
                "--quiet",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self.conversions = 0

    def proxy(self, timeout: float) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(
            f"http://127.0.0.1:{self.port}",
            allow_none=True,
            transport=_TimeoutTransport(timeout),
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(
                    f"LibreOffice (unoserver) exited at start with status {self.proc.returncode}",
                    reason="CONVERTER_START_FAILED",
                )
            try:
                info = self.proxy(5).info()
                if isinstance(info, dict) and info.get("api"):
                    return
            except (OSError, xmlrpc.client.Error):
                pass
            time.sleep(0.5)
        self.kill()
        raise Unavailable(
            f"LibreOffice (unoserver) did not answer within {timeout:.0f} s",
            reason="CONVERTER_START_FAILED",
        )

    def pids(self) -> list[int]:
        """unoserver and every LibreOffice process it started (same session)."""
        return _session_pids(self.proc.pid)

    def office_pids(self) -> list[int]:
        """The LibreOffice processes of this instance (not the unoserver interpreter)."""
        return [p for p in self.pids() if p != self.proc.pid]

    def rss_bytes(self) -> int:
        return sum(_rss_bytes(p) for p in self.pids())

    def kill(self) -> None:
        """SIGKILL the whole session (a SIGSTOPped or hung soffice dies too), reap, clean up."""
        pids = self.pids()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
        shutil.rmtree(self._shim, ignore_errors=True)


class LibreOfficePool:
    """A small pool of LibreOffice servers; thread-safe; see the module docstring."""

    def __init__(self, config: ConverterConfig | None = None) -> None:
        self.config = config or ConverterConfig.from_env()
        self._lock = threading.Lock()
        self._free: queue.Queue[_Instance | None] = queue.Queue()
        for _ in range(self.config.instances):
            self._free.put(None)  # a slot; its instance starts on first use
        self._live: set[_Instance] = set()
        self._closed = False
        self._workdir = Path(tempfile.mkdtemp(prefix="docfactory-lo-"))
        self.restarts = 0
        #: Test hook: called with the instance's LibreOffice pids and the input path right
        #: before each conversion is sent (a fault test SIGSTOPs soffice from here).
        self.before_convert: Callable[[list[int], Path], None] | None = None
        atexit.register(self.close)

    def _start(self) -> _Instance:
        python, office = uno_python(), soffice_path()
        if python is None or office is None:
            raise FailedPrecondition(
                "LibreOffice conversion is not installed in this deployment",
                reason="CONVERTER_UNAVAILABLE",
            )
        inst = _Instance(python, office, self._workdir)
        with self._lock:
            self._live.add(inst)
        try:
            inst.wait_ready(self.config.start_timeout_s)
        except BaseException:
            self._retire(inst)
            raise
        return inst

    def _retire(self, inst: _Instance) -> None:
        with self._lock:
            self._live.discard(inst)
        inst.kill()

    def convert(self, src: Path, target_ext: str, out_dir: Path) -> Path:
        """Convert ``src`` to ``out_dir/<stem>.<target_ext>``; returns the output path."""
        if self._closed:
            raise Unavailable("the converter is shut down", reason="SHUTTING_DOWN")
        slot = self._free.get()
        inst: _Instance | None = slot
        keep = True
        try:
            if inst is None:
                inst = self._start()
            out = out_dir / f"{src.stem or 'document'}.{target_ext}"
            if self.before_convert is not None:
                self.before_convert(inst.office_pids(), src)
            timeout = self.config.timeout_s
            try:
                inst.proxy(timeout).convert(
                    str(src.resolve()), None, str(out.resolve()), target_ext, None, [], False
                )
            except TimeoutError as exc:
                keep = False
                raise FailedPrecondition(
                    f"{src.name}: LibreOffice did not convert the file within {timeout:g} s "
                    "(the converter was restarted)",
                    reason="CONVERSION_TIMEOUT",
                    metadata={"timeout_s": f"{timeout:g}"},
                ) from exc
            except xmlrpc.client.Fault as exc:
                if not inst.office_pids():  # the file made soffice crash: start a new one
                    keep = False
                # LibreOffice refused the file (corrupt, password, unknown filter).
                detail = (exc.faultString or str(exc)).strip().splitlines() or [""]
                raise FailedPrecondition(
                    f"{src.name}: LibreOffice could not convert the file: {detail[-1]}"[:500],
                    reason="CONVERSION_FAILED",
                ) from exc
            except (OSError, xmlrpc.client.Error) as exc:
                keep = False
                raise Unavailable(
                    f"{src.name}: the LibreOffice converter failed ({type(exc).__name__}: "
                    f"{exc}); it was restarted"[:500],
                    reason="CONVERTER_CRASHED",
                ) from exc
            inst.conversions += 1
            if not out.is_file() or out.stat().st_size == 0:
                raise FailedPrecondition(
                    f"{src.name}: LibreOffice produced no output", reason="CONVERSION_FAILED"
                )
            if (
                inst.conversions >= self.config.max_conversions
                or inst.rss_bytes() > self.config.max_rss_mb * 1024 * 1024
            ):
                keep = False
            return out
        finally:
            if inst is not None and not keep:
                self._retire(inst)
                self.restarts += 1
                inst = None
            if self._closed and inst is not None:
                self._retire(inst)
                inst = None
            self._free.put(inst)

    def instances(self) -> list[_Instance]:
        with self._lock:
            return list(self._live)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        atexit.unregister(self.close)
        self._closed = True
        with self._lock:
            live, self._live = list(self._live), set()
        for inst in live:
            inst.kill()
        shutil.rmtree(self._workdir, ignore_errors=True)


_DEFAULT: LibreOfficePool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> LibreOfficePool:
    """The process-wide pool (one per server process, or per parse child process)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT.closed:
            _DEFAULT = LibreOfficePool()
        return _DEFAULT


def set_default_pool(pool: LibreOfficePool | None) -> LibreOfficePool | None:
    """Replace the process-wide pool (tests, or a composition root with its own settings);
    returns the previous one, which the caller closes."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        previous, _DEFAULT = _DEFAULT, pool
        return previous
