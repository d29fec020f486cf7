"""Worker processes beside a server (``docfactory serve``): bulk-ingestion workers and dossier
workers alike. Each is ``python -m <module>`` with the given environment, restarted with a
growing delay when it exits unexpectedly, stopped (SIGTERM, then SIGKILL after the grace
period) with the server. Production runs workers as their own deployments (deploy/k8s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
from collections.abc import Mapping

log = logging.getLogger("docfactory.supervisor")


class WorkerSupervisor:
    def __init__(self, module: str, env: Mapping[str, str], count: int, name: str = "") -> None:
        self._module = module
        self._env = dict(env)
        self._count = count
        self.name = name or module
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._restarts = [0] * count
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def _spawn(self, i: int) -> None:
        self._procs[i] = subprocess.Popen([sys.executable, "-m", self._module], env=self._env)

    async def start(self) -> None:
        for i in range(self._count):
            self._spawn(i)
        self._task = asyncio.create_task(self._watch())
        log.info("started %d %s process(es)", self._count, self.name)

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(1.0)
            for i, proc in enumerate(self._procs):
                if self._stopping or proc is None or proc.poll() is None:
                    continue
                self._restarts[i] += 1
                delay = min(30.0, 0.5 * 2 ** min(self._restarts[i], 6))
                log.warning(
                    "%s %d exited with %s; restarting in %.1fs",
                    self.name,
                    i,
                    proc.returncode,
                    delay,
                )
                self._procs[i] = None
                await asyncio.sleep(delay)
                if not self._stopping:
                    self._spawn(i)

    @property
    def count(self) -> int:
        return self._count

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.poll() is None]

    async def stop(self, grace_seconds: float = 15.0) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        live = [p for p in self._procs if p is not None and p.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)

        def wait_all() -> None:
            for p in live:
                try:
                    p.wait(grace_seconds)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)

        await asyncio.to_thread(wait_all)
