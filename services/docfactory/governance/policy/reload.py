"""Hot reload: the policy in force, replaced when its file changes to a valid version."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from docfactory.governance.policy.access import Policy
from docfactory.governance.policy.errors import PolicyError

log = logging.getLogger("docfactory.governance.policy")


class PolicyStore:
    """The current policy, reloaded when the file changes; keeps the last good one on error.

    The file's (mtime_ns, size, inode) is checked at most every ``check_interval_s`` seconds
    (on ``current()``). A file that fails validation is not applied: the previous policy stays
    in force, ``last_error`` holds the problem (logged once per faulty version of the file) and
    ``on_error`` is called. The first load must succeed (PolicyError otherwise).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[PolicyError], None] | None = None,
    ) -> None:
        self._path = Path(path)
        self._interval = check_interval_s
        self._clock = clock
        self._on_error = on_error
        self._lock = threading.Lock()
        self._last_check = clock()
        self._stamp = self._stat()
        self._policy = Policy.load(self._path)
        self._error: PolicyError | None = None
        self._error_stamp: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def last_error(self) -> PolicyError | None:
        """The error of the file on disk when it is not the one in force, else None."""
        return self._error

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Policy:
        now = self._clock()
        if now - self._last_check >= self._interval:
            self.reload()
        return self._policy

    def reload(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or ``force``); True when a new policy was applied."""
        with self._lock:
            self._last_check = self._clock()
            stamp = self._stat()
            if stamp is None:
                self._fail(PolicyError(str(self._path), ["<file>: not readable"]), None)
                return False
            if not force and stamp == self._stamp:
                return False
            try:
                policy = Policy.load(self._path)
            except PolicyError as exc:
                self._fail(exc, stamp)
                return False
            previous = self._policy.version
            self._policy = policy
            self._stamp = stamp
            self._error = None
            self._error_stamp = None
            log.info(
                "governance policy reloaded from %s: version %s -> %s",
                self._path,
                previous,
                policy.version,
            )
            return True

    def _fail(self, exc: PolicyError, stamp: tuple[int, int, int] | None) -> None:
        if self._error is not None and stamp == self._error_stamp:
            return  # already reported for this version of the file
        self._error = exc
        self._error_stamp = stamp
        log.error(
            "governance policy %s rejected, keeping version %s: %s",
            self._path,
            self._policy.version,
            exc.message,
        )
        if self._on_error is not None:
            self._on_error(exc)
