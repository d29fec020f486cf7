"""Answer generators behind one Protocol.

- ``ExtractiveGenerator`` (default without a model): quotes the sentences that answer
  (``docfactory.answering.sentences``) with their passages' markers, clearly labelled as
  extractive; the generative backends send the passages in the order of the same selection.
- ``OpenAIChatGenerator``: OpenAI-compatible chat completions with streaming (how docfactory
  talks to vLLM serving Mistral), through an endpoint pool (``docfactory.core.pool``), with
  ``complete_json`` for structured extraction.
- ``TransformersGenerator``: a local ``transformers`` causal LM (e.g. a Mistral checkpoint or a
  GGUF file) when a model path is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from docfactory.answering.prompt import (
    DONT_KNOW,
    EXTRACTIVE_LABEL,
    PromptPassage,
    build_messages,
    contextual_query,
)
from docfactory.answering.sentences import (
    Selection,
    SelectionConfig,
    order_passages,
    select,
)
from docfactory.core.config import GenerationConfig
from docfactory.core.errors import ConfigError, DocfactoryError, Unavailable
from docfactory.core.pool import EndpointPool, PoolSettings


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    quotes: dict[int, str] = field(default_factory=dict)  # marker -> quoted span


class Generator(Protocol):
    name: str
    extractive: bool

    def stream(
        self,
        question: str,
        passages: Sequence[PromptPassage],
        language: str,
        usage: Usage,
        history: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


class ExtractiveGenerator:
    """Quotes the sentences of the passages that answer the question (``sentences.select``):
    the best one, up to four more that score close to it, each with the minimum context to read
    correctly and its passage's marker; headings and titles are never quoted. When no sentence
    shares enough of the question's terms it says it does not know (insufficient context)."""

    name = "extractive"
    extractive = True

    def __init__(self, config: SelectionConfig | None = None) -> None:
        self._config = config or SelectionConfig()

    def select(self, question: str, passages: Sequence[PromptPassage], language: str) -> Selection:
        return select(
            question,
            [p.text for p in passages],
            language,
            headings=[p.headings for p in passages],
            cfg=self._config,
        )

    async def stream(
        self,
        question: str,
        passages: Sequence[PromptPassage],
        language: str,
        usage: Usage,
        history: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[str]:
        # A follow-up question is scored in the context of the earlier user turns.
        question = contextual_query(question, history)
        selection = await asyncio.to_thread(self.select, question, passages, language)
        if selection.insufficient:
            yield DONT_KNOW.get(language, DONT_KNOW["en"])
            return
        yield EXTRACTIVE_LABEL.get(language, EXTRACTIVE_LABEL["en"]) + "\n"
        for position, quote in selection.quotes:
            p = passages[position]
            usage.quotes[p.marker] = quote
            yield f"\n« {quote} » [{p.marker}] ({p.source})\n"

    async def close(self) -> None:
        return None


def answer_first(
    question: str, passages: Sequence[PromptPassage], language: str
) -> list[PromptPassage]:
    """The passages in the order to show a model: the most answer-bearing first (the
    extractive selection's passage order); markers are kept, so citations still point to the
    right passage."""
    if len(passages) < 2:
        return list(passages)
    order = order_passages(
        question, [p.text for p in passages], language, [p.headings for p in passages]
    )
    return [passages[i] for i in order]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one use (answers, extraction, ...). ``extra`` goes to the request
    body as is (vLLM: ``seed``, ``min_tokens``, ``ignore_eos``, ``repetition_penalty``...)."""

    max_tokens: int
    temperature: float
    top_p: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            **self.extra,
        }


def _has_content(event: Mapping[str, Any]) -> bool:
    return any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])


def _is_final(event: Mapping[str, Any]) -> bool:
    return any(c.get("finish_reason") for c in event.get("choices") or [])


def _text_bytes(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(len(m["content"].encode("utf-8")) + 16 for m in messages)


def approx_tokens(text: str) -> int:
    """Rough token count when the server cannot tokenize (Mistral's tekken averages ~3.5-4
    characters per token on French and English prose; 3 keeps a margin)."""
    return len(text) // 3 + 1


_REASONS = {
    "UPSTREAM_INTERRUPTED": "GENERATION_INTERRUPTED",
    "UPSTREAM_REJECTED": "GENERATION_REJECTED",
}


def _renamed(exc: DocfactoryError) -> DocfactoryError:
    if exc.reason in _REASONS:
        exc.reason = _REASONS[exc.reason]
    return exc


class OpenAIChatGenerator:
    """Chat completions from OpenAI-compatible servers (vLLM serving Mistral) through an
    ``EndpointPool``: balancing, health, fail-fast, retry on another replica only while nothing
    has been streamed, the gRPC deadline as HTTP timeout, cancellation passed upstream.

    vLLM applies the served model's chat template server-side, so this only sends messages.
    The prompt is fitted to the context window with the server's tokenizer (vLLM
    ``POST /tokenize``), or an approximate count when the server has no such endpoint; the
    passages are trimmed (last ranked first) to leave room for the answer."""

    extractive = False

    def __init__(self, cfg: GenerationConfig, pool: EndpointPool | None = None) -> None:
        if not cfg.urls and pool is None:
            raise ConfigError("generation backend 'openai' needs DOCFACTORY_CHAT_URLS")
        self._cfg = cfg
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self.pool = pool or EndpointPool(
            cfg.urls, name="chat", settings=PoolSettings.from_config(cfg), headers=headers
        )
        self.pool.start()
        self.model = cfg.model
        self.name = f"openai:{cfg.model or 'default'}"
        self.answer_sampling = Sampling(cfg.max_tokens, cfg.temperature, cfg.top_p)
        self.extraction_sampling = Sampling(
            cfg.extraction_max_tokens, cfg.extraction_temperature, 1.0
        )
        self._tokenize: bool | None = None  # None: not tried yet
        self._max_model_len: int | None = None
        self._meta_read = False

    async def _model_name(self) -> str:
        """The served model's name (configured, else the first of GET /v1/models). The model
        list is read once: vLLM gives each model's ``max_model_len`` there too."""
        if self._meta_read:
            return self.model
        try:
            data = await self.pool.request_json("GET", "/models")
            entries = data["data"]
            entry = next((e for e in entries if e.get("id") == self.model), None)
            entry = entry or (entries[0] if not self.model else None)
        except (DocfactoryError, KeyError, IndexError, TypeError):
            if not self.model:
                raise
            return self.model  # known name: the metadata can wait for the next call
        self._meta_read = True
        if entry is not None:
            if not self.model:
                self.model = str(entry["id"])
                self.name = f"openai:{self.model}"
            if entry.get("max_model_len"):
                self._max_model_len = int(entry["max_model_len"])
        return self.model

    # ---- context budget --------------------------------------------------------------------

    async def _server_count(self, payload: dict[str, Any]) -> int | None:
        """Token count by the server's tokenizer (vLLM /tokenize), None when unavailable."""
        if self._tokenize is False:
            return None
        try:
            data = await self.pool.request_json(
                "POST", "/tokenize", {"model": await self._model_name(), **payload}, root=True
            )
            count = int(data["count"])
        except (DocfactoryError, KeyError, TypeError, ValueError):
            self._tokenize = False  # e.g. 404: the server has no /tokenize
            return None
        self._tokenize = True
        if data.get("max_model_len"):
            self._max_model_len = int(data["max_model_len"])
        return count

    async def count_messages(self, messages: Sequence[Mapping[str, str]]) -> tuple[int, bool]:
        """(tokens of the templated prompt, exact?)."""
        n = await self._server_count({"messages": list(messages), "add_generation_prompt": True})
        if n is not None:
            return n, True
        return sum(approx_tokens(m["content"]) + 8 for m in messages), False

    async def count_text(self, text: str) -> int:
        n = await self._server_count({"prompt": text, "add_special_tokens": False})
        return approx_tokens(text) if n is None else n

    def prompt_budget(self, sampling: Sampling) -> int:
        window = self._cfg.context_tokens
        if self._max_model_len:
            window = min(window, self._max_model_len)
        return max(0, window - sampling.max_tokens)

    async def fit_passages(
        self,
        question: str,
        passages: Sequence[PromptPassage],
        language: str,
        sampling: Sampling | None = None,
    ) -> list[PromptPassage]:
        """The passages (in rank order) that fit the context window with room for the answer;
        the last one kept may be cut."""
        sampling = sampling or self.answer_sampling
        await self._model_name()  # learns the server's max_model_len
        messages = build_messages(question, passages, language)
        # Byte-level BPE (tekken) never makes more tokens than UTF-8 bytes: no count needed.
        if _text_bytes(messages) <= self.prompt_budget(sampling):
            return list(passages)
        total, _ = await self.count_messages(messages)
        budget = self.prompt_budget(sampling)  # max_model_len may have been learnt
        if total <= budget:
            return list(passages)
        base, _ = await self.count_messages(build_messages(question, [], language))
        blocks = [f"[{p.marker}] ({p.source})\n{p.text}\n\n" for p in passages]
        costs = await asyncio.gather(*(self.count_text(b) for b in blocks))
        left = budget - base
        kept: list[PromptPassage] = []
        for p, cost in zip(passages, costs, strict=True):
            if cost <= left:
                kept.append(p)
                left -= cost
                continue
            if left >= 48:  # worth a cut passage
                keep_chars = int(len(p.text) * (left / cost) * 0.9)
                kept.append(
                    PromptPassage(p.marker, p.text[:keep_chars].rstrip() + " […]", p.source)
                )
            break
        return kept

    # ---- generation ------------------------------------------------------------------------

    async def stream_messages(
        self,
        messages: Sequence[Mapping[str, str]],
        usage: Usage,
        sampling: Sampling | None = None,
    ) -> AsyncGenerator[str, None]:
        """Stream the assistant's text for chat messages (the server applies the template)."""
        sampling = sampling or self.answer_sampling
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling.body(),
        }
        # aclosing: a consumer that stops early closes the HTTP stream at once (not at garbage
        # collection), which makes the server abort the generation.
        events = self.pool.stream_sse(
            "/chat/completions", body, is_output=_has_content, is_final=_is_final
        )
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.get("usage"):
                        usage.prompt_tokens = int(event["usage"].get("prompt_tokens") or 0)
                        usage.completion_tokens = int(event["usage"].get("completion_tokens") or 0)
                    for choice in event.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            yield str(delta)
        except DocfactoryError as exc:
            raise _renamed(exc) from exc.__cause__

    async def stream(
        self,
        question: str,
        passages: Sequence[PromptPassage],
        language: str,
        usage: Usage,
        history: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[str]:
        ordered = await asyncio.to_thread(answer_first, question, passages, language)
        fitted = await self.fit_passages(question, ordered, language)
        pieces = self.stream_messages(build_messages(question, fitted, language, history), usage)
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                yield piece

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        sampling: Sampling | None = None,
        **body_extra: Any,
    ) -> str:
        """One non-streamed completion (retried on another replica on failure)."""
        sampling = sampling or self.extraction_sampling
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "messages": list(messages),
            "stream": False,
            **sampling.body(),
            **body_extra,
        }
        try:
            data = await self.pool.request_json("POST", "/chat/completions", body)
        except DocfactoryError as exc:
            raise _renamed(exc) from exc.__cause__
        try:
            return str(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as exc:
            raise Unavailable(
                f"malformed chat completion: {str(data)[:200]}", reason="GENERATOR_ERROR"
            ) from exc

    async def complete_json(
        self,
        messages: Sequence[Mapping[str, str]],
        schema: Mapping[str, Any],
        *,
        sampling: Sampling | None = None,
        name: str = "extraction",
    ) -> Any:
        """Structured output: the model's answer constrained to a JSON schema (vLLM guided
        decoding through ``response_format``), parsed and, when ``jsonschema`` is installed,
        validated. Raises ``Unavailable`` / ``MODEL_OUTPUT_INVALID`` when the server did not
        honour the schema (servers without guided decoding ignore ``response_format``)."""
        text = await self.complete(
            messages,
            sampling or self.extraction_sampling,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": name, "schema": dict(schema), "strict": True},
            },
        )
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise Unavailable(
                f"the model did not return JSON: {text[:200]!r}", reason="MODEL_OUTPUT_INVALID"
            ) from exc
        try:
            import jsonschema
        except ImportError:  # pragma: no cover - optional
            return value
        try:
            jsonschema.validate(value, dict(schema))
        except jsonschema.ValidationError as exc:
            raise Unavailable(
                f"the model's JSON does not match the schema: {exc.message}",
                reason="MODEL_OUTPUT_INVALID",
            ) from exc
        return value

    async def close(self) -> None:
        await self.pool.aclose()


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
        self,
        question: str,
        passages: Sequence[PromptPassage],
        language: str,
        usage: Usage,
        history: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[str]:
        from transformers import TextIteratorStreamer

        ordered = answer_first(question, passages, language)
        messages = build_messages(question, ordered, language, history)
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
