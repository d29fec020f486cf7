"""Issue 24: SIGTERM took 70-130 s while an abandoned ChunkText ran (grace 10 s). A server
stops within its grace period even when a handler's thread is still busy with a call whose
client went away (the thread cannot be cancelled; the process no longer waits for it)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc
import pytest

from docfactory.chunking.v1 import chunking_service_pb2 as pb
from docfactory.chunking.v1 import chunking_service_pb2_grpc as pb_grpc
from tests.fault.support import Serve, free_port

pytestmark = pytest.mark.slow

GRACE_S = 2.0


async def test_sigterm_stops_within_the_grace_period_despite_an_abandoned_call(
    tmp_path: Path,
) -> None:
    server = Serve(
        tmp_path / "data",
        free_port(),
        tmp_path / "serve.log",
        env={
            "DOCFACTORY_GRACE_SECONDS": str(GRACE_S),
            "DOCFACTORY_WORKFLOWS_SERVE_WORKERS": "0",
            "DOCFACTORY_API_KEY": "",
        },
    )
    try:
        await server.ready()
        key = (tmp_path / "data" / "api-key").read_text().strip()
        # ~40 MB of prose cut into tiny chunks: far longer than the grace period on 2 cores.
        text = ("Le contrat de travail est exécuté de bonne foi par les parties. " * 8) + "\n\n"
        big = text * 75_000
        async with grpc.aio.insecure_channel(
            server.address,
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
        ) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await pb_grpc.ChunkingServiceStub(ch).ChunkText(
                    pb.ChunkTextRequest(
                        document_id="big",
                        text=big,
                        options=pb.ChunkingOptions(max_tokens=16, overlap_tokens=4),
                    ),
                    metadata=(("x-api-key", key),),
                    timeout=3,
                )
            assert gone.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.5)  # the handler's thread is busy with the abandoned call
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(server.proc.wait, 60)
        took = time.monotonic() - t0
        assert rc == 0
        # the grace period plus start-up of the shutdown, never the abandoned call's length
        assert took < GRACE_S + 15, f"SIGTERM took {took:.1f} s"
        assert "abandoned" in (tmp_path / "serve.log").read_text()
    finally:
        server.stop()
