"""Legacy office formats through LibreOffice (unoserver pool): real files of the formats corpus
converted and parsed as their modern equivalents; a conversion that hangs (soffice really
stopped with SIGSTOP) hits the timeout with its reason, the pool restarts LibreOffice, and the
rest of the batch lands."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from docfactory.app import start_server
from docfactory.core.config import Settings
from docfactory.core.errors import FailedPrecondition
from docfactory.ingestion.adapters.convert import (
    ConverterConfig,
    LibreOfficePool,
    converter_available,
    set_default_pool,
)
from docfactory.ingestion.adapters.parser import UnstructuredParser
from tests.conftest import shared_data
from tests.helpers import error_reason, upload

pytestmark = pytest.mark.skipif(
    not converter_available(),
    reason="LibreOffice (soffice + python3-uno) or unoserver not installed: conversion untested",
)

# file -> words its converted text must contain (read from the files with LibreOffice by hand)
LEGACY = {
    "simple.doc": ("application/msword", ["favorite things", "Parrots", "Hockey"]),
    "fake-power-point.ppt": ("application/vnd.ms-powerpoint", ["Adding a Bullet Slide"]),
    "tests-example.xls": ("application/vnd.ms-excel", ["What is 2+2?", "datatypes"]),
    "fake-doc.rtf": ("application/rtf", ["My First Heading", "Row 1, Cell 1"]),
}


def _alive(pid: int) -> bool:
    """Running or stopped (a zombie waiting for its reaper is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


@pytest.fixture
def pool() -> Iterator[LibreOfficePool]:
    p = LibreOfficePool(ConverterConfig(instances=1, timeout_s=20, max_conversions=3))
    try:
        yield p
    finally:
        pids = [pid for inst in p.instances() for pid in inst.pids()]
        p.close()
        assert not [pid for pid in pids if _alive(pid)], "LibreOffice processes left behind"


@pytest.mark.slow
def test_legacy_formats_are_converted_then_parsed(pool: LibreOfficePool) -> None:
    parser = UnstructuredParser(converter=pool)
    for name, (mime, words) in LEGACY.items():
        src = shared_data("formats", name)
        doc = parser.parse(src, name)
        text = "\n".join(e.text for e in doc.elements)
        assert doc.strategy.startswith("libreoffice+"), (name, doc.strategy)
        assert doc.mime_type == mime, name
        for word in words:
            assert word in text, (name, word, text[:300])
    # recycled after max_conversions (3): the fourth file ran on a fresh instance
    assert pool.restarts >= 1


def test_without_libreoffice_the_reason_stays_converter_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCFACTORY_CONVERTER", "off")
    with pytest.raises(FailedPrecondition) as err:
        UnstructuredParser().parse(shared_data("formats", "simple.doc"), "simple.doc")
    assert err.value.reason == "CONVERTER_UNAVAILABLE"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_hanging_conversion_times_out_and_the_batch_lands(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    files = {
        "a-first.doc": "simple.doc",
        "b-hangs.doc": "fake.doc",
        "c-after.ppt": "fake-power-point.ppt",
        "d-after.xls": "tests-example.xls",
    }
    batch = tmp_path / "batch"
    batch.mkdir()
    for dst, src in files.items():
        (batch / dst).write_bytes(shared_data("formats", src).read_bytes())
    pool = LibreOfficePool(ConverterConfig(instances=1, timeout_s=12))
    stopped: list[int] = []

    def hang_soffice(office_pids: list[int], src: Path) -> None:
        if src.name == "b-hangs.doc":
            assert office_pids, "no soffice process to stop"
            for pid in office_pids:
                os.kill(pid, signal.SIGSTOP)  # LibreOffice really stops answering
            stopped.extend(office_pids)

    pool.before_convert = hang_soffice
    previous = set_default_pool(pool)
    running = await start_server(make_settings(), port=0)
    outcomes: dict[str, tuple[str, str, int]] = {}
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            for f in sorted(batch.iterdir()):  # a batch: one upload after the other
                try:
                    r = await upload(ch, f, collection="legacy")
                    outcomes[f.name] = ("INDEXED", "", r.document.chunk_count)
                except grpc.aio.AioRpcError as exc:
                    outcomes[f.name] = (error_reason(exc), exc.details() or "", 0)
    finally:
        await running.stop(0.5)
        set_default_pool(previous)
        live = [pid for inst in pool.instances() for pid in inst.pids()]
        pool.close()
    reason, message, _ = outcomes["b-hangs.doc"]
    assert reason == "CONVERSION_TIMEOUT", outcomes
    assert "12 s" in message
    for name in ("a-first.doc", "c-after.ppt", "d-after.xls"):
        assert outcomes[name][0] == "INDEXED" and outcomes[name][2] >= 1, (name, outcomes)
    # the stopped soffice was killed (not left stopped), a fresh one converted the rest
    assert stopped and not [pid for pid in stopped if _alive(pid)]
    assert pool.restarts == 1
    assert not set(stopped) & set(live)
