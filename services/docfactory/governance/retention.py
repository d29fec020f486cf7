"""Retention of question texts, enforced on a schedule.

Each use case declares how long a question's text is kept (``retention: 30d``); the audit
record stores the text with its expiry. :class:`RetentionPurger` nulls expired texts every
``interval`` seconds in every process that serves Search/Answer (the purge is one idempotent
UPDATE, so several replicas running it is harmless), and once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from docfactory.governance.audit import AuditLog

log = logging.getLogger("docfactory.governance")


class RetentionPurger:
    def __init__(
        self,
        audit: AuditLog,
        interval_seconds: float = 3600.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._audit = audit
        self._interval = max(0.05, interval_seconds)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.purged = 0  # question texts nulled since start (for tests and logs)

    def run_once(self) -> int:
        n = self._audit.purge_questions(self._clock() if self._clock else None)
        self.purged += n
        if n:
            log.info("retention: %d expired question text(s) removed", n)
        return n

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # a failed purge is retried at the next tick
                log.exception("retention purge failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
