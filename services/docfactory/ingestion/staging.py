"""Where uploads are written while they stream in: a private folder under the data dir.

Each upload is a file ``upload-<pid>-<random>``, removed when its request ends (success or
failure). A process killed with -9 cannot remove its own: at start-up, files of processes that
no longer run are deleted (``prepare_staging_dir``), so crashes leave no copies of documents
behind. The folder is mode 0700 and files are created 0600 (``tempfile.mkstemp``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("docfactory.ingestion")

PREFIX = "upload-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def prepare_staging_dir(path: Path) -> Path:
    """Create ``path`` (0700) and remove the staged uploads of processes that died."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    removed = 0
    for f in path.iterdir():
        if not f.name.startswith(PREFIX):
            continue
        try:
            pid = int(f.name[len(PREFIX) :].split("-", 1)[0])
        except ValueError:
            pid = -1
        if pid > 0 and _alive(pid):
            continue
        with contextlib.suppress(OSError):
            f.unlink()
            removed += 1
    if removed:
        log.warning("removed %d staged upload(s) left by a crashed process in %s", removed, path)
    return path


def staged_prefix() -> str:
    return f"{PREFIX}{os.getpid()}-"
