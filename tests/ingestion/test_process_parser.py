"""ProcessPoolParser: parsing in child processes, errors and crashes carried back."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from docfactory.core.errors import FailedPrecondition, InvalidArgument, Unavailable
from docfactory.ingestion.adapters.parser import ProcessPoolParser, UnstructuredParser

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "en" / "operator-guide.md"


def _parse_in_background(
    parser: ProcessPoolParser, tmp_path: Path
) -> tuple[threading.Thread, dict[str, object]]:
    """Start parsing a ~24 MB text (seconds of work) in a thread; the outcome lands in the dict."""
    big = tmp_path / "big.txt"
    paragraph = "Le contrat est formé par la rencontre d'une offre et d'une acceptation. " * 8
    big.write_text("\n\n".join(f"{i}. {paragraph}" for i in range(40_000)), encoding="utf-8")
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = parser.parse(big, "big.txt")
        except BaseException as exc:
            outcome["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, outcome


@pytest.fixture
def pool_parser():
    parser = ProcessPoolParser(1)
    yield parser
    parser.close()


def test_same_elements_as_in_process(pool_parser: ProcessPoolParser) -> None:
    expected = UnstructuredParser().parse(GUIDE, GUIDE.name)
    got = pool_parser.parse(GUIDE, GUIDE.name)
    assert got.mime_type == expected.mime_type == "text/markdown"
    assert len(got.elements) > 20
    assert list(got.elements) == list(expected.elements)
    # It really ran in another process.
    assert pool_parser._pool is not None
    pids = set(pool_parser._pool._processes)  # type: ignore[attr-defined]
    assert pids and os.getpid() not in pids


def test_errors_keep_their_reason(pool_parser: ProcessPoolParser, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(FailedPrecondition) as info:
        pool_parser.parse(empty, "empty.pdf")
    assert info.value.reason == "EMPTY_FILE"
    assert "empty.pdf" in info.value.message
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 64)
    with pytest.raises((InvalidArgument, FailedPrecondition)) as info2:
        pool_parser.parse(blob, "blob.bin")
    assert info2.value.reason in {"UNSUPPORTED_FORMAT", "UNKNOWN_FORMAT"}
    # The pool is still usable after errors.
    assert pool_parser.parse(GUIDE, GUIDE.name).elements


def test_killed_child_fails_that_parse_and_pool_recovers(
    pool_parser: ProcessPoolParser, tmp_path: Path
) -> None:
    pool_parser.warm_up()
    t, outcome = _parse_in_background(pool_parser, tmp_path)
    time.sleep(1.0)
    assert pool_parser._pool is not None
    for pid in list(pool_parser._pool._processes):  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    t.join(60)
    assert not t.is_alive()
    err = outcome.get("error")
    assert isinstance(err, Unavailable), outcome
    assert err.reason == "PARSER_CRASHED"
    # A fresh pool serves the next document.
    assert pool_parser.parse(GUIDE, GUIDE.name).elements


def test_close_does_not_wait_for_a_long_parse(tmp_path: Path) -> None:
    parser = ProcessPoolParser(1)
    parser.warm_up()
    assert parser._pool is not None
    children = list(parser._pool._processes.values())  # type: ignore[attr-defined]
    t, outcome = _parse_in_background(parser, tmp_path)
    time.sleep(1.0)
    started = time.monotonic()
    parser.close()
    assert time.monotonic() - started < 10
    t.join(30)
    assert not t.is_alive()
    assert isinstance(outcome.get("error"), Unavailable), outcome
    # Gone: no process of that pid left, or only its zombie (checked by pid: is_alive() stays
    # True for a child another thread of this process has already reaped).
    deadline = time.monotonic() + 10
    while any(_running(c.pid) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(c.pid) for c in children)


def _running(pid: int | None) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_closed_parser_refuses(tmp_path: Path) -> None:
    parser = ProcessPoolParser(1)
    parser.close()
    with pytest.raises(Unavailable) as info:
        parser.parse(GUIDE, GUIDE.name)
    assert info.value.reason == "SHUTTING_DOWN"


def test_needs_a_process() -> None:
    with pytest.raises(ValueError):
        ProcessPoolParser(0)
