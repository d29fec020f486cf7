"""Generation backends on real protocols: an OpenAI-compatible chat server over a real socket
(the stand-in for vLLM, which needs a GPU) and a tiny MistralForCausalLM through transformers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from docfactory.answering.adapters.generators import (
    ExtractiveGenerator,
    OpenAIChatGenerator,
    TransformersGenerator,
    Usage,
)
from docfactory.answering.prompt import DONT_KNOW, PromptPassage, build_messages, cited_markers
from docfactory.app import start_server
from docfactory.core.config import GenerationConfig, Settings
from tests.helpers import answer, upload


class _ChatHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    reply = "Selon le règlement, la cantine ouvre à midi [1]."

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "mistral-small", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        req = json.loads(self.rfile.read(length))
        type(self).requests.append(req)
        assert self.path == "/v1/chat/completions"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in self.reply.split(" "):
            chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        usage = {"choices": [], "usage": {"prompt_tokens": 321, "completion_tokens": 12}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture
def chat_server() -> Iterator[str]:
    _ChatHandler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_answer_through_openai_compatible_server(
    chat_server: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dead = "http://127.0.0.1:9/v1"  # nothing listens: the client moves on before streaming
    settings = make_settings(generation={"urls": f"{dead},{chat_server}", "model": "mistral-small"})
    running = await start_server(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            f = tmp_path / "reglement.md"
            f.write_text("# Cantine\n\nLa cantine ouvre à midi et ferme à quatorze heures.")
            await upload(ch, f)
            text, cits, summary = await answer(ch, "À quelle heure ouvre la cantine ?")
    finally:
        await running.stop(0.5)
    assert "[1]" in text and "midi" in text
    assert summary.generator == "openai:mistral-small" and not summary.extractive
    assert summary.prompt_tokens == 321 and summary.completion_tokens == 12
    assert summary.language == "fr"
    assert len(cits) == 1 and cits[0].marker == 1 and cits[0].document_name == "reglement.md"
    req = _ChatHandler.requests[-1]
    assert req["stream"] is True and req["model"] == "mistral-small"
    system, user = req["messages"][0]["content"], req["messages"][1]["content"]
    assert "UNIQUEMENT" in system and "Je ne sais pas" in system
    assert "[1] (reglement.md" in user and "La cantine ouvre à midi" in user


async def test_model_gets_the_answer_bearing_passage_first(chat_server: str) -> None:
    """The generative path orders its context with the extractive selection: the passage that
    answers goes first, markers unchanged, so the model's [n] still cite the right passage."""
    gen = OpenAIChatGenerator(GenerationConfig(urls=(chat_server,), model="mistral-small"))
    passages = [
        PromptPassage(1, "Le règlement intérieur est affiché à l'entrée du bâtiment.", "a.md"),
        PromptPassage(2, "Le parking est au sous-sol.", "b.md"),
        PromptPassage(3, "Horaires. La cantine ouvre à midi et ferme à 14 heures.", "c.md"),
    ]
    usage = Usage()
    try:
        out = "".join(
            [
                p
                async for p in gen.stream(
                    "À quelle heure ouvre la cantine ?", passages, "fr", usage
                )
            ]
        )
    finally:
        await gen.close()
    assert "[1]" in out  # the stand-in's reply
    user = _ChatHandler.requests[-1]["messages"][1]["content"]
    assert user.index("[3] (c.md)") < user.index("[1] (a.md)") < user.index("[2] (b.md)")
    assert cited_markers(out, 3) == [1]


def test_prompt_language_and_markers() -> None:
    passages = [PromptPassage(1, "Text one.", "a.pdf, p. 1"), PromptPassage(2, "Two.", "b.md")]
    en = build_messages("What is it?", passages, "en")
    assert "ONLY" in en[0]["content"] and "I don't know" in en[0]["content"]
    assert en[1]["content"].endswith("Question: What is it?")
    assert cited_markers("See [2] and [1][2], not [7].", 2) == [2, 1]


async def test_extractive_quotes_best_sentence() -> None:
    gen = ExtractiveGenerator()
    usage = Usage()
    passage = PromptPassage(
        1,
        "Le bâtiment A abrite l'accueil. La cantine ouvre à midi. Le parking est au sous-sol.",
        "guide.md",
    )
    out = "".join([p async for p in gen.stream("Quand ouvre la cantine ?", [passage], "fr", usage)])
    assert "extractive" in out.lower()
    assert usage.quotes[1] == "La cantine ouvre à midi."
    assert "« La cantine ouvre à midi. » [1]" in out


async def test_extractive_says_so_when_no_passage_supports_an_answer() -> None:
    gen = ExtractiveGenerator()
    passages = [
        PromptPassage(1, "Le parking est au sous-sol. Il ferme à 20 heures.", "guide.md"),
        PromptPassage(2, "La cantine ouvre à midi.", "cantine.md"),
    ]
    usage = Usage()
    out = "".join(
        [
            p
            async for p in gen.stream(
                "Quelle est la capitale de la Mongolie ?", passages, "fr", usage
            )
        ]
    )
    assert usage.quotes == {} and "[1]" not in out and "[2]" not in out
    assert out.startswith(DONT_KNOW["fr"][:12])
    # Only the passage that shares a term with the question is quoted.
    usage = Usage()
    out = "".join([p async for p in gen.stream("Où est le parking ?", passages, "fr", usage)])
    assert set(usage.quotes) == {1} and "[2]" not in out


def _tiny_mistral(path: Path) -> Path:
    """A real MistralForCausalLM (random weights) with a locally trained tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    corpus = ["La cantine ouvre à midi.", "Réponds uniquement à partir des extraits."] * 50
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    fast.save_pretrained(path)
    cfg = MistralConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    MistralForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.mark.slow
async def test_transformers_generator_streams_with_chat_template(tmp_path: Path) -> None:
    path = _tiny_mistral(tmp_path / "tiny-mistral")
    gen = TransformersGenerator(
        GenerationConfig(model_path=str(path), max_tokens=12, temperature=0)
    )
    usage = Usage()
    passages = [PromptPassage(1, "La cantine ouvre à midi.", "guide.md")]
    pieces = [p async for p in gen.stream("Quand ouvre la cantine ?", passages, "fr", usage)]
    assert pieces, "no token streamed"
    assert usage.prompt_tokens > 20  # system prompt + passage went through the chat template
    assert 0 < usage.completion_tokens <= 12
    assert gen.name == "transformers:tiny-mistral"
    # a consumer that stops early stops generation (no hang)
    stream = gen.stream("Quand ?", passages, "fr", Usage())
    first = await stream.__anext__()
    assert isinstance(first, str)
    await stream.aclose()


def test_readers_never_see_two_versions_of_a_document() -> None:
    from docfactory.answering.service import Citation, Passage, latest_versions_only

    def passage(doc: str, version: int, text: str) -> Passage:
        cit = Citation(
            doc, f"{doc}.md", "", f"{doc}-{version}-{text}", (), (), "", 1.0, "c", version
        )
        return Passage(text, 1.0, cit)

    hits = [
        passage("a", 1, "old"),
        passage("a", 2, "new"),
        passage("b", 1, "only"),
        passage("a", 2, "new2"),
    ]
    kept = latest_versions_only(hits)
    assert [p.text for p in kept] == ["new", "only", "new2"]


async def test_follow_up_question_with_conversation_history(
    chat_server: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Answer with prior turns: the follow-up is retrieved in the context of the earlier
    question, the model receives the turns (user/assistant) before the passages; a turn
    without a role is INVALID_ARGUMENT / INVALID_HISTORY."""
    from docfactory.answering.v1 import answering_service_pb2 as pb

    settings = make_settings(generation={"urls": chat_server, "model": "mistral-small"})
    running = await start_server(settings, port=0)
    history = [
        pb.ConversationTurn(role=pb.TURN_ROLE_USER, text="Quels sont les horaires de la cantine ?"),
        pb.ConversationTurn(role=pb.TURN_ROLE_ASSISTANT, text="Elle ouvre à midi [1]."),
    ]
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            (tmp_path / "cantine.md").write_text(
                "# Cantine\n\nLa cantine ouvre à midi et ferme à quatorze heures."
            )
            (tmp_path / "parking.md").write_text(
                "# Parking\n\nLe parking du personnel ferme à vingt heures."
            )
            await upload(ch, tmp_path / "cantine.md")
            await upload(ch, tmp_path / "parking.md")
            _, cits, _ = await answer(
                ch, "Et à quelle heure ferme-t-elle ?", history=history, top_k=1
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await answer(ch, "Et ensuite ?", history=[pb.ConversationTurn(text="sans rôle")])
    finally:
        await running.stop(0.5)
    assert [c.document_name for c in cits] == ["cantine.md"]
    msgs = _ChatHandler.requests[-1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == "Quels sont les horaires de la cantine ?"
    assert msgs[3]["content"].endswith("Question : Et à quelle heure ferme-t-elle ?")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    from tests.helpers import error_reason

    assert error_reason(err.value) == "INVALID_HISTORY"
