"""ElasticParser: one document at a time in the process, child processes while a batch flows,
let go when idle."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from docfactory.ingestion.adapters.parser import (
    ElasticParser,
    ParsedDocument,
    ProcessPoolParser,
    UnstructuredParser,
    burst_processes,
)

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "en" / "operator-guide.md"


class Gated:
    """The in-process parser, held at a gate so that parses overlap; records its calls."""

    def __init__(self) -> None:
        self.real = UnstructuredParser()
        self.gate = threading.Event()
        self.calls = 0

    def parse(self, path: Path, filename: str) -> ParsedDocument:
        self.calls += 1
        self.gate.wait(30)
        return self.real.parse(path, filename)


def _until(cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _children(pool: ProcessPoolParser) -> list[int]:
    inner = pool._pool
    return list(getattr(inner, "_processes", {}) or {}) if inner is not None else []


def test_burst_processes_from_setting_and_cores() -> None:
    assert burst_processes(3, cores=16) == 3
    assert burst_processes(0, cores=16) == 0
    assert burst_processes(-1, cores=1) == 0
    assert burst_processes(-1, cores=2) == 2
    assert burst_processes(-1, cores=3) == 2
    assert burst_processes(-1, cores=6) == 3
    assert burst_processes(-1, cores=64) == 4


def test_one_document_at_a_time_stays_in_process() -> None:
    inline = Gated()
    inline.gate.set()
    pool = ProcessPoolParser(1)
    parser = ElasticParser(inline, pool, idle_seconds=30)
    try:
        for _ in range(3):
            got = parser.parse(GUIDE, GUIDE.name)
            assert len(got.elements) > 20
        assert inline.calls == 3
        assert parser.state == "cold"
        assert pool._pool is None
    finally:
        parser.close()


def _overlapping(
    parser: ElasticParser, n: int
) -> tuple[list[threading.Thread], list[ParsedDocument]]:
    results: list[ParsedDocument] = []
    threads = [
        threading.Thread(target=lambda: results.append(parser.parse(GUIDE, GUIDE.name)))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    return threads, results


def test_batch_on_a_fresh_process_never_parses_here() -> None:
    inline = Gated()
    inline.gate.set()
    pool = ProcessPoolParser(2)
    parser = ElasticParser(inline, pool, idle_seconds=30, batch_window=5.0)
    expected = UnstructuredParser().parse(GUIDE, GUIDE.name)
    try:
        threads, results = _overlapping(parser, 2)
        for t in threads:
            t.join(120)
        # The first parse waited for company; both went to the children.
        assert inline.calls == 0
        assert [list(r.elements) for r in results] == [list(expected.elements)] * 2
        pids = _children(pool)
        assert pids and os.getpid() not in pids
    finally:
        parser.close()


def test_batch_moves_to_children_then_lets_them_go() -> None:
    inline = Gated()
    pool = ProcessPoolParser(1)
    parser = ElasticParser(inline, pool, idle_seconds=1.0)
    expected = UnstructuredParser().parse(GUIDE, GUIDE.name)
    try:
        inline.gate.set()
        parser.parse(GUIDE, GUIDE.name)  # a single document: here (the parser is loaded now)
        assert inline.calls == 1 and parser.state == "cold"
        inline.gate.clear()
        threads, results = _overlapping(parser, 2)
        # Two parses in flight: the children start in the background, the parses go on here.
        _until(lambda: parser.state in ("warming", "ready"))
        inline.gate.set()
        for t in threads:
            t.join(60)
        assert inline.calls == 3 and len(results) == 2
        _until(lambda: parser.state == "ready")
        pids = _children(pool)
        assert pids and os.getpid() not in pids
        got = parser.parse(GUIDE, GUIDE.name)  # in a child now
        assert inline.calls == 3
        assert list(got.elements) == list(expected.elements)
        # Idle: the children exit, the next document is parsed here again.
        _until(lambda: parser.state == "cold", timeout=30)
        _until(lambda: not any(_alive(p) for p in pids), timeout=30)
        parser.parse(GUIDE, GUIDE.name)
        assert inline.calls == 4
    finally:
        inline.gate.set()
        parser.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_close_stops_children_and_later_parses_fail_cleanly() -> None:
    inline = Gated()
    pool = ProcessPoolParser(1)
    parser = ElasticParser(inline, pool, burst=1, idle_seconds=30)
    inline.gate.set()
    parser.parse(GUIDE, GUIDE.name)  # burst=1: starts the children
    _until(lambda: parser.state == "ready")
    pids = _children(pool)
    assert pids
    parser.close()
    for pid in pids:
        _until(
            lambda pid=pid: (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            ),
            timeout=15,
        )
    from docfactory.core.errors import Unavailable

    with pytest.raises(Unavailable):
        parser.parse(GUIDE, GUIDE.name)
