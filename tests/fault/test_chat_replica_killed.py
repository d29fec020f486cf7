"""Fault: an OpenAI-compatible generation replica is killed (-9) while it streams an Answer.
``docfactory serve`` balances two replicas (stand-ins in their own processes,
tests/fault/chat_standin.py):

* the Answer being streamed ends promptly with UNAVAILABLE, reason ``GENERATION_INTERRUPTED``
  (the client knows its text is partial: never a silent truncation, never INTERNAL, no hang);
* the next Answers succeed at once on the surviving replica, each with its whole text once;
* the killed replica, restarted on its port, is re-admitted by the health checks and serves
  again; the server stays SERVING throughout.

(The pool under load against real `transformers serve` replicas: tests/e2e/test_pool_e2e.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from tests.conftest import write_keys
from tests.fault.chat_standin import REPLY
from tests.fault.support import Serve, free_port, serving, start_chat_standin
from tests.helpers import answer, error_reason, md, upload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUESTION = "À quelle heure ouvre la cantine ?"


class Replica:
    def __init__(self, port: int, markers: Path) -> None:
        self.port, self.markers = port, markers
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_chat_standin(self.port, self.markers)

    def streams(self) -> int:
        return len(list(self.markers.glob(f"streaming-{self.port}-*")))

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    markers = tmp_path / "markers"
    markers.mkdir()
    reps = [Replica(free_port(), markers) for _ in range(2)]
    for r in reps:
        r.start()
    yield reps
    for r in reps:
        r.kill9()


async def test_replica_killed_mid_stream(
    tmp_path: Path, replicas: list[Replica], procs: list[Any]
) -> None:
    keys = write_keys(tmp_path / "keys.yaml")
    server = Serve(
        tmp_path / "data",
        free_port(),
        tmp_path / "serve.log",
        {
            "DOCFACTORY_KEYS_FILE": str(keys),
            "DOCFACTORY_CHAT_URLS": ",".join(r.url for r in replicas),
            "DOCFACTORY_CHAT_MODEL": "mistral-small",
            "DOCFACTORY_CHAT_HEALTH_INTERVAL_SECONDS": "0.5",
            "DOCFACTORY_CHAT_EJECT_SECONDS": "1",
        },
    )
    procs.append(server)
    await server.ready()
    async with grpc.aio.insecure_channel(server.address) as ch:
        doc = tmp_path / "reglement.md"
        doc.write_text("# Cantine\n\nLa cantine ouvre à midi et ferme à quatorze heures.\n")
        await upload(ch, doc)

        # 1. Kill the replica that is streaming, after a few words.
        stub = ans_grpc.AnsweringServiceStub(ch)
        call = stub.Answer(
            ans_pb.AnswerRequest(question=QUESTION), metadata=md("key-acme"), timeout=60
        )
        received: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for msg in call:
                if msg.WhichOneof("content") == "delta":
                    received.append(msg.delta.text)
                    if len(received) == 3:
                        victim = next(r for r in replicas if r.streams())
                        killed_at = time.monotonic()
                        victim.kill9()
        ended_in = time.monotonic() - killed_at
        print(f"cut after {len(received)} deltas, ended {ended_in:.2f} s after the kill")
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE, cut.value
        assert error_reason(cut.value) == "GENERATION_INTERRUPTED"
        assert ended_in < 5
        assert 3 <= len(received) < len(REPLY.split(" "))

        # 2. The survivor answers at once; each answer whole, once.
        survivor = next(r for r in replicas if r is not victim)
        before = survivor.streams()
        for _ in range(3):
            text, cits, _ = await asyncio.wait_for(answer(ch, QUESTION), 30)
            assert text.count("la cantine ouvre à midi") == 1, text
            assert cits and cits[0].document_name == "reglement.md"
        assert survivor.streams() == before + 3
        assert await serving(ch)

        # 3. The killed replica comes back on its port and is re-admitted.
        victim.start()
        served_before = victim.streams()
        deadline = time.monotonic() + 30
        while victim.streams() == served_before and time.monotonic() < deadline:
            await answer(ch, QUESTION)
        assert victim.streams() > served_before, "the restarted replica was not re-admitted"
        assert await serving(ch)
    assert server.proc.poll() is None
