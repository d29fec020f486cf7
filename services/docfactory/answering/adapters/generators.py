"""Answer generators behind one Protocol.

- ``ExtractiveGenerator`` (default without a model): quotes the best sentences of the best
  passages with their markers, clearly labelled as extractive.
- ``OpenAIChatGenerator``: OpenAI-compatible chat completions with streaming (how docfactory
  talks to vLLM serving Mistral).
- ``TransformersGenerator``: a local ``transformers`` causal LM (e.g. a Mistral checkpoint or a
  GGUF file) when a model path is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from docfactory.answering.prompt import (
    DONT_KNOW,
    EXTRACTIVE_LABEL,
    PromptPassage,
    build_messages,
)
from docfactory.core.config import GenerationConfig
from docfactory.core.errors import ConfigError, InvalidArgument, Unavailable
from docfactory.core.lexical import get_analyzer


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    quotes: dict[int, str] = field(default_factory=dict)  # marker -> quoted span


class Generator(Protocol):
    name: str
    extractive: bool

    def stream(
        self, question: str, passages: Sequence[PromptPassage], language: str, usage: Usage
    ) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


class ExtractiveGenerator:
    name = "extractive"
    extractive = True

    def __init__(self, max_passages: int = 3, max_sentences: int = 2) -> None:
        self._max_passages = max_passages
        self._max_sentences = max_sentences

    def _best_sentences(self, question: str, text: str, language: str) -> str:
        analyzer = get_analyzer(language if language in ("fr", "en") else "fr")
        q_terms = set(analyzer.tokens(question))
        sentences = [s.strip() for s in _SENT.split(text) if len(s.strip()) > 3]
        if not sentences:
            return text.strip()[:400]
        scored = []
        for i, sentence in enumerate(sentences):
            overlap = len(q_terms & set(analyzer.tokens(sentence)))
            scored.append((overlap, i, sentence))
        top = max(o for o, _, _ in scored)
        if top == 0:
            best = [scored[0]]
        else:
            ranked = sorted(scored, key=lambda t: (-t[0], t[1]))
            best = [t for t in ranked[: self._max_sentences] if t[0] * 2 >= top]
            best.sort(key=lambda t: t[1])  # reading order
        quote = " ".join(s for _, _, s in best)
        return quote if len(quote) <= 600 else quote[:597] + "..."

    async def stream(
        self, question: str, passages: Sequence[PromptPassage], language: str, usage: Usage
    ) -> AsyncIterator[str]:
        if not passages:
            yield DONT_KNOW.get(language, DONT_KNOW["en"])
            return
        yield EXTRACTIVE_LABEL.get(language, EXTRACTIVE_LABEL["en"]) + "\n"
        for p in passages[: self._max_passages]:
            quote = self._best_sentences(question, p.text, language)
            usage.quotes[p.marker] = quote
            yield f"\n« {quote} » [{p.marker}] ({p.source})\n"

    async def close(self) -> None:
        return None


class OpenAIChatGenerator:
    """Streams chat completions from OpenAI-compatible servers (vLLM), trying the next URL
    only while nothing has been streamed yet."""

    extractive = False

    def __init__(self, cfg: GenerationConfig) -> None:
        import httpx

        if not cfg.urls:
            raise ConfigError("generation backend 'openai' needs DOCFACTORY_CHAT_URLS")
        self._cfg = cfg
        self._urls = [u.rstrip("/") for u in cfg.urls]
        self._next = 0
        self.model = cfg.model
        self.name = f"openai:{cfg.model or 'default'}"
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_seconds, connect=5.0), headers=headers
        )

    async def _model_name(self, url: str) -> str:
        if self.model:
            return self.model
        r = await self._http.get(f"{url}/models")
        r.raise_for_status()
        self.model = str(r.json()["data"][0]["id"])
        self.name = f"openai:{self.model}"
        return self.model

    async def stream(
        self, question: str, passages: Sequence[PromptPassage], language: str, usage: Usage
    ) -> AsyncIterator[str]:
        import httpx

        messages = build_messages(question, passages, language)
        last: Exception | None = None
        for attempt in range(len(self._urls)):
            url = self._urls[(self._next + attempt) % len(self._urls)]
            started = False
            try:
                body: dict[str, Any] = {
                    "model": await self._model_name(url),
                    "messages": messages,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "max_tokens": self._cfg.max_tokens,
                    "temperature": self._cfg.temperature,
                    "top_p": self._cfg.top_p,
                }
                async with self._http.stream("POST", f"{url}/chat/completions", json=body) as r:
                    if r.status_code >= 400:
                        text = (await r.aread()).decode(errors="replace")[:300]
                        if r.status_code == 400:
                            raise InvalidArgument(
                                f"model server rejected the request: {text}",
                                reason="GENERATION_REJECTED",
                            )
                        raise Unavailable(
                            f"model server {url} answered {r.status_code}: {text}",
                            reason="GENERATOR_ERROR",
                        )
                    async for line in r.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        event = json.loads(data)
                        if event.get("usage"):
                            usage.prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
                            usage.completion_tokens = int(
                                event["usage"].get("completion_tokens") or 0
                            )
                        for choice in event.get("choices") or []:
                            delta = (choice.get("delta") or {}).get("content")
                            if delta:
                                started = True
                                yield delta
                self._next = (self._next + attempt + 1) % len(self._urls)
                return
            except (httpx.HTTPError, Unavailable) as exc:
                last = exc
                if started:
                    raise Unavailable(
                        f"model server {url} failed mid-answer: {exc}",
                        reason="GENERATION_INTERRUPTED",
                    ) from exc
        raise Unavailable(f"no model server answered: {last}", reason="GENERATOR_UNAVAILABLE")

    async def close(self) -> None:
        await self._http.aclose()


class TransformersGenerator:
    """Local transformers causal LM, streamed token by token from a worker thread."""

    extractive = False

    def __init__(self, cfg: GenerationConfig) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {}
        if cfg.gguf_file:
            kwargs["gguf_file"] = cfg.gguf_file
        try:
            self._tok = AutoTokenizer.from_pretrained(cfg.model_path, **kwargs)
            self._model = AutoModelForCausalLM.from_pretrained(cfg.model_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load generation model {cfg.model_path}: {exc}") from exc
        self._model.eval()  # type: ignore[no-untyped-call]
        self._cfg = cfg
        self.name = f"transformers:{cfg.model or os.path.basename(cfg.model_path.rstrip('/'))}"
        self._lock = threading.Lock()

    def _prompt_ids(self, messages: list[dict[str, str]]) -> Any:
        if getattr(self._tok, "chat_template", None):
            ids = self._tok.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            return ids["input_ids"]  # type: ignore[call-overload,index]
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self._tok(text, return_tensors="pt")["input_ids"]

    async def stream(
        self, question: str, passages: Sequence[PromptPassage], language: str, usage: Usage
    ) -> AsyncIterator[str]:
        from transformers import TextIteratorStreamer

        messages = build_messages(question, passages, language)
        input_ids = self._prompt_ids(messages)
        budget = self._cfg.context_tokens - self._cfg.max_tokens
        if input_ids.shape[1] > budget:
            input_ids = input_ids[:, -budget:]
        usage.prompt_tokens = int(input_ids.shape[1])
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        def run() -> None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            class _Stop(StoppingCriteria):  # type: ignore[misc]
                def __call__(self, *args: Any, **kwargs: Any) -> bool:
                    return stop.is_set()

            with self._lock:
                try:
                    out = self._model.generate(
                        input_ids=input_ids,
                        max_new_tokens=self._cfg.max_tokens,
                        do_sample=self._cfg.temperature > 0,
                        temperature=max(self._cfg.temperature, 1e-3),
                        top_p=self._cfg.top_p,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                        pad_token_id=self._tok.eos_token_id,
                    )
                    usage.completion_tokens = int(out.shape[1] - input_ids.shape[1])
                except Exception:
                    streamer.end()  # type: ignore[no-untyped-call]
                    raise

        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(None, run)
        it = iter(streamer)
        sentinel = object()
        try:
            while True:
                piece = await loop.run_in_executor(None, next, it, sentinel)
                if piece is sentinel:
                    break
                if piece:
                    yield str(piece)
        finally:
            stop.set()  # a cancelled stream stops generation
            with contextlib.suppress(Exception):
                await task

    async def close(self) -> None:
        return None


def make_generator(cfg: GenerationConfig) -> Generator:
    backend = cfg.backend
    if backend == "auto":
        backend = "openai" if cfg.urls else ("transformers" if cfg.model_path else "extractive")
    if backend == "extractive":
        return ExtractiveGenerator()
    if backend == "openai":
        return OpenAIChatGenerator(cfg)
    if backend == "transformers":
        return TransformersGenerator(cfg)
    raise ConfigError(f"unknown generation backend {cfg.backend!r}")
