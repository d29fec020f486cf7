"""The endpoint pool against REAL OpenAI-compatible servers that are not docfactory's own:
three `transformers serve` processes (transformers[serving]: FastAPI + uvicorn, with /health and
SSE streaming) on 127.0.0.1, each serving a tiny local MistralForCausalLM.

The model is a real Mistral-architecture checkpoint (2 layers, hidden 64) with a locally trained
byte-level BPE tokenizer and a Mistral-style `[INST] ... [/INST]` chat template. Random weights
never write "[1]", so the weights are set by hand to make greedy decoding repeat
" La cantine ouvre à midi [1]." forever (the attention and MLP outputs are zeroed and the
embedding/LM head form a fixed token cycle): the model really runs (every token is a forward
pass of MistralForCausalLM on CPU), it never stops before max_tokens, and its answers cite [1].

What is checked: balancing spreads load over the replicas; `kill -9` of one replica under steady
load fails no request that had not started streaming; a restarted replica is re-admitted; all
replicas down gives UNAVAILABLE in < 2 s; a cancelled Answer stream stops the server's
generation (its CPU time stops growing); an Answer through the pool streams tokens and
citations over real gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from docfactory.answering.adapters.generators import OpenAIChatGenerator, Sampling, Usage
from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.app import start_server
from docfactory.core.config import GenerationConfig, Settings
from docfactory.core.errors import Unavailable
from docfactory.core.pool import EndpointPool, PoolSettings
from tests.helpers import answer, md, upload

pytestmark = pytest.mark.slow

ANSWER = " La cantine ouvre à midi [1]."
TRANSFORMERS = Path(sys.executable).parent / "transformers"
START_TIMEOUT = 300.0  # CPU-only, possibly a loaded machine


def build_citing_mistral(path: Path) -> Path:
    """Tiny MistralForCausalLM whose greedy output cycles through ANSWER (see the docstring)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [ANSWER * 3, "Réponds uniquement à partir des extraits.", "Answer only from."] * 50
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ m['content'] }}\n\n{% elif m['role'] == 'user' %}[INST] {{ m['content'] }}[/INST]"
        "{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
    )
    fast.save_pretrained(path)
    cycle = fast(ANSWER, add_special_tokens=False)["input_ids"]
    assert len(set(cycle)) == len(cycle), fast.convert_ids_to_tokens(cycle)
    chain = [fast.convert_tokens_to_ids("[/INST]"), *cycle]
    cfg = MistralConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = MistralForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        for i, tid in enumerate(chain):
            emb[tid].zero_()
            emb[tid, i] = 1.0
            nxt = chain[i + 1] if i + 1 < len(chain) else cycle[0]
            head[nxt, i] = 10.0
    model.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeReplica:
    """One `transformers serve` process on 127.0.0.1, in its own process group."""

    def __init__(self, model: Path, port: int, log: Path) -> None:
        self.model, self.port, self.log = model, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",  # access-log lines reach the log file at once
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(str(TRANSFORMERS), "serve", str(self.model), "--host", "127.0.0.1"),
                    *("--port", str(self.port), "--device", "cpu", "--log-level", "info"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"transformers serve on {self.port} not ready after {timeout}s")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """CPU time of the replica: its process and any process it started (a serving
        stack may generate in a child)."""
        import psutil

        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def chat_requests(self) -> int:
        return self.log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP')


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServeReplica]]:
    if not TRANSFORMERS.exists():
        pytest.skip("`transformers serve` not installed (pip install 'transformers[serving]')")
    root = tmp_path_factory.mktemp("pool-e2e")
    model = build_citing_mistral(root / "cite-mistral")
    reps = [ServeReplica(model, free_port(), root / f"replica{i}.log") for i in range(3)]
    try:
        for r in reps:
            r.start()
        for r in reps:
            r.wait_ready()
        yield reps
    finally:
        for r in reps:
            r.kill9()


def _pool_settings() -> dict[str, Any]:
    return {"health_interval_seconds": 0.5, "eject_seconds": 1.0, "eject_after_errors": 2}


def _generator(reps: list[ServeReplica], **kw: Any) -> OpenAIChatGenerator:
    cfg = GenerationConfig(urls=tuple(r.url for r in reps), **{**_pool_settings(), **kw})
    return OpenAIChatGenerator(cfg)


MSGS = [{"role": "user", "content": "Quand ouvre la cantine ?"}]


async def _one(gen: OpenAIChatGenerator, max_tokens: int = 12) -> tuple[str, bool, str]:
    """(outcome, started streaming?, text): outcome ok | error reason."""
    parts: list[str] = []
    try:
        async for piece in gen.stream_messages(MSGS, Usage(), Sampling(max_tokens, 0.0)):
            parts.append(piece)
    except Unavailable as exc:
        return exc.reason, bool(parts), "".join(parts)
    return "ok", bool(parts), "".join(parts)


async def test_answer_through_pool_streams_tokens_and_citations(
    replicas: list[ServeReplica], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    urls = ",".join(r.url for r in replicas)
    settings = make_settings(generation={"urls": urls, "max_tokens": 600, **_pool_settings()})
    running = await start_server(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            f = tmp_path / "reglement.md"
            f.write_text("# Cantine\n\nLa cantine ouvre à midi et ferme à quatorze heures.")
            await upload(ch, f)
            question = "À quelle heure ouvre la cantine ?"

            # 1. A cancelled Answer stops the upstream generation (frees the GPU).
            stub = ans_grpc.AnsweringServiceStub(ch)
            call = stub.Answer(
                ans_pb.AnswerRequest(question=question), metadata=md("key-acme"), timeout=120
            )
            deltas = 0
            async for msg in call:
                if msg.WhichOneof("content") == "delta":
                    deltas += 1
                    if deltas >= 3:
                        break
            c0 = sum(r.cpu_seconds() for r in replicas)
            await asyncio.sleep(0.8)
            c1 = sum(r.cpu_seconds() for r in replicas)  # still generating (600 tokens)
            call.cancel()
            await asyncio.sleep(0.5)
            c2 = sum(r.cpu_seconds() for r in replicas)
            await asyncio.sleep(1.5)
            c3 = sum(r.cpu_seconds() for r in replicas)
            during, after = (c1 - c0) / 0.8, (c3 - c2) / 1.5
            print(f"replica CPU while generating {during:.2f} s/s, after cancel {after:.2f} s/s")
            assert during > 0.2, during
            assert after < 0.3 * during, (during, after)
            gens = [getattr(c, "__self__", None) for c in running.closers]
            pool = next(g for g in gens if isinstance(g, OpenAIChatGenerator)).pool
            assert sum(s.outstanding for s in pool.stats()) == 0

            # 2. A whole Answer: streamed tokens, then the citation of passage [1].
            text, cits, summary = await answer(ch, question)
    finally:
        await running.stop(0.5)
    assert "La cantine ouvre à midi [1]." in text
    assert len(cits) == 1 and cits[0].marker == 1 and cits[0].document_name == "reglement.md"
    assert summary.generator.startswith("openai:") and not summary.extractive
    assert summary.completion_tokens == 600 or summary.completion_tokens == 0  # usage optional


async def test_balancing_spreads_load(replicas: list[ServeReplica]) -> None:
    gen = _generator(replicas)
    before = [r.chat_requests() for r in replicas]
    try:
        sem = asyncio.Semaphore(6)

        async def run() -> tuple[str, bool, str]:
            async with sem:
                return await _one(gen)

        results = await asyncio.gather(*(run() for _ in range(30)))
    finally:
        await gen.close()
    assert all(o == "ok" and ANSWER.strip()[:10] in t for o, _, t in results), results
    served = {s.url: s.served for s in gen.pool.stats()}
    logged = [r.chat_requests() - b for r, b in zip(replicas, before, strict=True)]
    print(f"served per replica (pool) {list(served.values())}, (server logs) {logged}")
    # Least-outstanding balancing: every replica takes a share and none takes most of the load.
    # (A replica slowed by a busy machine legitimately gets fewer requests, so no equal split.)
    total = sum(served.values())
    assert all(n >= 2 for n in served.values()), served
    assert max(served.values()) <= 0.7 * total, served
    assert all(n >= 1 for n in logged), logged


async def test_kill9_under_load_then_readmission(replicas: list[ServeReplica]) -> None:
    gen = _generator(replicas)
    victim = replicas[1]
    results: list[tuple[str, bool, str]] = []
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            results.append(await _one(gen, max_tokens=24))

    try:
        workers = [asyncio.create_task(worker()) for _ in range(6)]
        await asyncio.sleep(2.0)
        victim.kill9()
        killed_at = len(results)
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 60)
        failed_before = [r for r in results if r[0] != "ok" and not r[1]]
        failed_after = [r for r in results if r[0] != "ok" and r[1]]
        ok = [r for r in results if r[0] == "ok"]
        print(
            f"kill -9 under load: {len(results)} requests ({killed_at} before the kill), "
            f"{len(ok)} ok, {len(failed_after)} cut mid-stream, {len(failed_before)} failed "
            "before streaming"
        )
        assert not failed_before, failed_before
        assert len(ok) > len(results) - 7  # at most the in-flight ones on the victim were cut
        assert all(r[0] == "GENERATION_INTERRUPTED" for r in failed_after)
        stats = {s.url: s for s in gen.pool.stats()}
        assert not stats[victim.url].up

        # Re-admission: the replica comes back on the same port; health checks admit it.
        served_before = stats[victim.url].served
        victim.start()
        victim.wait_ready()
        for _ in range(100):
            if {s.url: s for s in gen.pool.stats()}[victim.url].up:
                break
            await asyncio.sleep(0.1)
        assert {s.url: s for s in gen.pool.stats()}[victim.url].up
        again = await asyncio.gather(*(_one(gen) for _ in range(9)))
        assert all(o == "ok" for o, _, _ in again), again
        assert {s.url: s for s in gen.pool.stats()}[victim.url].served > served_before
    finally:
        stop.set()
        await gen.close()


async def test_cancelled_stream_stops_server_generation(replicas: list[ServeReplica]) -> None:
    gen = _generator(replicas[:1])
    rep = replicas[0]
    got: list[str] = []

    async def consume() -> None:
        async for piece in gen.stream_messages(MSGS, Usage(), Sampling(3000, 0.0)):
            got.append(piece)

    try:
        task = asyncio.create_task(consume())
        for _ in range(200):
            if len(got) >= 5:
                break
            await asyncio.sleep(0.05)
        c0 = rep.cpu_seconds()
        await asyncio.sleep(0.8)
        during = (rep.cpu_seconds() - c0) / 0.8
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The replica notices the closed stream at its next write; on a loaded machine that
        # can take a few seconds. Generating the 3,000 tokens asked would take minutes: the
        # CPU must fall well within 20 s.
        after = during
        for _ in range(20):
            c2 = rep.cpu_seconds()
            await asyncio.sleep(1.0)
            after = rep.cpu_seconds() - c2
            if after < 0.3 * during:
                break
        print(f"replica CPU while generating {during:.2f} s/s, after cancel {after:.2f} s/s")
        assert during > 0.2 and after < 0.3 * during, (during, after)
        assert gen.pool.stats()[0].outstanding == 0
    finally:
        await gen.close()


async def test_all_replicas_down_is_unavailable_fast(
    replicas: list[ServeReplica], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Runs last: it kills every replica."""
    urls = ",".join(r.url for r in replicas)
    settings = make_settings(generation={"urls": urls, "max_tokens": 12, **_pool_settings()})
    running = await start_server(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            f = tmp_path / "reglement.md"
            f.write_text("# Cantine\n\nLa cantine ouvre à midi.")
            await upload(ch, f)
            text, _, _ = await answer(ch, "Quand ouvre la cantine ?")
            assert "[1]" in text
            for r in replicas:
                r.kill9()
            for attempt in range(2):  # first: connections refused; then: all ejected
                t0 = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await answer(ch, "Quand ouvre la cantine ?")
                elapsed = time.monotonic() - t0
                print(f"all replicas down, attempt {attempt}: UNAVAILABLE in {elapsed:.3f}s")
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert elapsed < 2.0
                md_bin = dict(err.value.trailing_metadata() or ())
                assert "grpc-status-details-bin" in md_bin  # ErrorInfo + RetryInfo
        from google.rpc import error_details_pb2, status_pb2

        st = status_pb2.Status.FromString(md_bin["grpc-status-details-bin"])
        kinds = {d.type_url.rsplit("/", 1)[1] for d in st.details}
        assert "google.rpc.RetryInfo" in kinds and "google.rpc.ErrorInfo" in kinds
        info = error_details_pb2.ErrorInfo()
        next(d for d in st.details if d.Is(info.DESCRIPTOR)).Unpack(info)
        assert info.reason == "NO_HEALTHY_REPLICA"
    finally:
        await running.stop(0.5)


def test_pool_module_settings_from_config() -> None:
    cfg = GenerationConfig(urls=("http://127.0.0.1:1/v1",), max_concurrency_per_replica=7)
    s = PoolSettings.from_config(cfg)
    assert s.max_concurrency_per_replica == 7 and s.request_timeout_seconds == cfg.timeout_seconds
    EndpointPool(cfg.urls, name="x", settings=s).close_sync()
