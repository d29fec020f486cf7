"""Every Answer leaves an audit record, also one that never reaches its summary: the caller
cancels mid-stream (outcome ``CANCELLED``) or the generation replica dies (its error reason).
Real gRPC server in-process, an OpenAI-compatible stand-in replica in its own process
(tests/fault/chat_standin.py, streams a word every 0.15 s), the audit log read back from the
server's database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.app import RunningServer, start_server
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from tests.fault.support import free_port, start_chat_standin
from tests.helpers import error_reason, md, search, upload

pytestmark = pytest.mark.timeout(120)

QUESTION = "À quelle heure ouvre la cantine ?"


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = start_chat_standin(port, markers)
    try:
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
async def served(
    make_settings: Callable[..., Settings],
    replica: tuple[str, subprocess.Popen[bytes]],
) -> AsyncIterator[tuple[RunningServer, Settings]]:
    settings = make_settings(
        generation={"urls": (replica[0],), "model": "mistral-small", "eject_seconds": 30.0}
    )
    running = await start_server(settings, port=0)
    try:
        yield running, settings
    finally:
        await running.stop(0.5)


async def _answer_outcomes(settings: Settings, count: int) -> list[str]:
    """The outcomes of the ANSWER records, once there are ``count`` of them (10 s at most)."""
    log = AuditLog(make_engine(settings.resolved_database_url), create_tables=False)
    deadline = time.monotonic() + 10
    while True:
        outcomes = [r.outcome for r in log.records() if r.action == "ANSWER"]
        if len(outcomes) >= count or time.monotonic() > deadline:
            return outcomes
        await asyncio.sleep(0.1)


async def _first_delta(call: grpc.aio.UnaryStreamCall) -> None:
    async for msg in call:
        if msg.WhichOneof("content") == "delta":
            return


async def test_cancelled_and_failed_answers_are_audited(
    served: tuple[RunningServer, Settings],
    replica: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    running, settings = served
    async with grpc.aio.insecure_channel(running.address) as ch:
        doc = tmp_path / "reglement.md"
        doc.write_text("# Cantine\n\nLa cantine ouvre à midi et ferme à quatorze heures.\n")
        await upload(ch, doc)
        stub = ans_grpc.AnsweringServiceStub(ch)
        request = ans_pb.AnswerRequest(question=QUESTION)

        # A whole answer: one OK record.
        async for _ in stub.Answer(request, metadata=md("key-acme"), timeout=60):
            pass
        assert await _answer_outcomes(settings, 1) == ["OK"]

        # The caller cancels after the first words: the server records CANCELLED.
        call = stub.Answer(request, metadata=md("key-acme"), timeout=60)
        await asyncio.wait_for(_first_delta(call), 30)
        call.cancel()
        assert await _answer_outcomes(settings, 2) == ["OK", "CANCELLED"]

        # The replica dies mid-stream: the client gets the reason, the audit records it.
        call = stub.Answer(request, metadata=md("key-acme"), timeout=60)
        await asyncio.wait_for(_first_delta(call), 30)
        os.killpg(replica[1].pid, signal.SIGKILL)
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for _ in call:
                pass
        reason = error_reason(cut.value)
        assert reason == "GENERATION_INTERRUPTED"
        assert await _answer_outcomes(settings, 3) == ["OK", "CANCELLED", reason]

        # The server keeps serving.
        found = await search(ch, "cantine", key="key-acme")
        assert found.results and found.results[0].citation.document_name == "reglement.md"
