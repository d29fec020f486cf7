"""Time to first token through the endpoint pool vs directly to one replica.

Same run, same model, same server: `transformers serve` replicas on 127.0.0.1 serving the tiny
Mistral-architecture model of tests/e2e/test_pool_e2e.py (CPU). The baseline is a raw streamed
POST /v1/chat/completions to replica 0 with httpx (time to the first content delta); the
candidate is ``OpenAIChatGenerator.stream_messages`` through an ``EndpointPool`` (over replica 0
alone with --replicas 1, over all replicas otherwise). Requests alternate between the two so
machine load hits both alike. Prints medians, p90 and the ratio pool/direct.

    .venv/bin/python bench/bench_pool.py                   # 1 replica, 60 requests each
    .venv/bin/python bench/bench_pool.py --replicas 3 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docfactory.answering.adapters.generators import OpenAIChatGenerator, Sampling, Usage
from docfactory.core.config import GenerationConfig
from tests.e2e.test_pool_e2e import ServeReplica, build_citing_mistral, free_port

MSGS = [{"role": "user", "content": "Quand ouvre la cantine ?"}]


async def direct_ttft(client: httpx.AsyncClient, url: str, model: str) -> float:
    body = {"model": model, "messages": MSGS, "stream": True, "max_tokens": 8, "temperature": 0}
    t0 = time.perf_counter()
    first = 0.0
    async with client.stream("POST", f"{url}/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                event = json.loads(line[5:])
                choices = event.get("choices") or [{}]
                if not first and (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - t0
    return first


async def pool_ttft(gen: OpenAIChatGenerator) -> float:
    t0 = time.perf_counter()
    first = 0.0
    async for _ in gen.stream_messages(MSGS, Usage(), Sampling(8, 0.0)):
        if not first:
            first = time.perf_counter() - t0
    return first


def _fmt(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=10)
    return f"median {statistics.median(xs) * 1000:7.2f} ms   p90 {q[-1] * 1000:7.2f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--requests", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_citing_mistral(root / "cite-mistral")
        reps = [ServeReplica(model, free_port(), root / f"r{i}.log") for i in range(args.replicas)]
        try:
            for r in reps:
                r.start()
            for r in reps:
                r.wait_ready()
            gen = OpenAIChatGenerator(GenerationConfig(urls=tuple(r.url for r in reps)))
            async with httpx.AsyncClient(timeout=60) as client:
                # warm-up (model name discovery, connections, first-call costs on the server)
                for _ in range(3):
                    await pool_ttft(gen)
                    await direct_ttft(client, reps[0].url, gen.model)
                direct: list[float] = []
                pooled: list[float] = []
                for i in range(args.requests):
                    if i % 2:
                        direct.append(await direct_ttft(client, reps[0].url, gen.model))
                        pooled.append(await pool_ttft(gen))
                    else:
                        pooled.append(await pool_ttft(gen))
                        direct.append(await direct_ttft(client, reps[0].url, gen.model))
            await gen.close()
        finally:
            for r in reps:
                r.kill9()
    ratio = statistics.median(pooled) / statistics.median(direct)
    print(
        f"transformers serve, tiny Mistral, CPU, {args.replicas} replica(s), {args.requests} each"
    )
    print(f"direct to replica 0 : {_fmt(direct)}")
    print(f"through the pool    : {_fmt(pooled)}")
    print(f"overhead ratio pool/direct (median TTFT): {ratio:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
