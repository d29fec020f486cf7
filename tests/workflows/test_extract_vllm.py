"""The vLLM extraction path end to end against an OpenAI-compatible stand-in over a real
socket (no GPU here): the JSON Schema travels in ``response_format``, an invalid answer is
retried with the validation error, a value without a verbatim quote is flagged UNSUPPORTED."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from docfactory.core.errors import FailedPrecondition, Unavailable
from docfactory.workflows.extract import FOUND, MISSING, UNSUPPORTED, vllm_extractor
from docfactory.workflows.extract.vllm import response_schema

PAGES = [
    "LETTRE DE DEMANDE DE FINANCEMENT\nSociété : Atelier Lefebvre SAS\n"
    "SIREN : 732 829 320\nNous sollicitons un prêt d'un montant de\n45 000,00 € pour l'atelier.",
    "Fait à Lyon, le 12 mars 2025\nIBAN : FR76 3000 6000 0112 3456 7890 189",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "raison_sociale": {"type": "string", "title": "Raison sociale", "x-kind": "text"},
        "siren": {"type": "string", "title": "SIREN", "x-kind": "siren"},
        "montant": {"type": "string", "title": "Montant demandé", "x-kind": "amount_eur"},
        "date_demande": {"type": "string", "title": "Date de la demande", "x-kind": "date"},
        "iban": {"type": "string", "title": "IBAN", "x-kind": "iban"},
        "email": {"type": "string", "title": "Courriel", "x-kind": "email"},
    },
}


class StandIn:
    """A /v1/chat/completions server answering scripted contents, recording each request."""

    def __init__(self, answers: list[Any], status: int = 200) -> None:
        self.answers = list(answers)
        self.status = status
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append({"path": self.path, "body": body,
                                          "auth": self.headers.get("Authorization")})  # fmt: skip
                if stand_in.status != 200:
                    payload = json.dumps({"error": {"message": "overloaded"}}).encode()
                    self.send_response(stand_in.status)
                else:
                    content = stand_in.answers.pop(0)
                    if not isinstance(content, str):
                        content = json.dumps(content, ensure_ascii=False)
                    payload = json.dumps({
                        "id": f"chatcmpl-{len(stand_in.requests)}",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                    }).encode()  # fmt: skip
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def valid_answer() -> dict[str, Any]:
    return {
        "raison_sociale": {
            "value": "Atelier Lefebvre SAS",
            "quote": "Société : Atelier Lefebvre SAS",
        },
        "siren": {"value": "732829320", "quote": "SIREN : 732 829 320"},
        # the quote spans a line break in the page: matched with whitespace normalised
        "montant": {"value": "45000.00", "quote": "d'un montant de 45 000,00 €"},
        # a value the document does not support: its "quote" is not in the document
        "date_demande": {"value": "2025-04-01", "quote": "le 1er avril 2025"},
        # a quote that exists but does not hold the value
        "iban": {"value": "FR7630004000031234567890143", "quote": "Fait à Lyon"},
        "email": {"value": None, "quote": None},
    }  # fmt: skip


def test_schema_in_request_retry_with_error_and_unsupported_values(
    valid_answer: dict[str, Any],
) -> None:
    invalid = dict(valid_answer)
    invalid["siren"] = {"value": "732829320"}  # no "quote": violates the schema
    with StandIn([invalid, valid_answer]) as server:
        ex = vllm_extractor(server.url, "mistral-small", api_key="sk-test", max_attempts=3)
        fields = {f.name: f for f in ex.extract("doc-1", PAGES, SCHEMA)}
    assert len(server.requests) == 2
    first, second = (r["body"] for r in server.requests)
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["auth"] == "Bearer sk-test"
    fmt = first["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == response_schema(SCHEMA)
    assert set(fmt["json_schema"]["schema"]["properties"]) == set(SCHEMA["properties"])
    assert first["model"] == "mistral-small"
    # the retry carries the invalid answer and the validation error
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2] == {
        "role": "assistant",
        "content": json.dumps(invalid, ensure_ascii=False),
    }
    feedback = second["messages"][-1]["content"]
    assert "siren" in feedback and "'quote' is a required property" in feedback

    assert fields["siren"].status == FOUND and fields["siren"].value == "732829320"
    ev = fields["siren"].evidence
    assert ev is not None and ev.page == 1 and PAGES[0][ev.start : ev.end] == ev.quote
    assert ev.quote == "SIREN : 732 829 320"
    m = fields["montant"]
    assert m.status == FOUND and m.value == "45000.00" and m.evidence is not None
    assert m.evidence.quote == "d'un montant de\n45 000,00 €"  # verbatim, line break included
    assert fields["raison_sociale"].status == FOUND
    assert fields["date_demande"].status == UNSUPPORTED and fields["date_demande"].evidence is None
    assert fields["date_demande"].value == "2025-04-01"  # kept for the reviewer, flagged
    assert fields["iban"].status == UNSUPPORTED
    assert fields["email"].status == MISSING and fields["email"].value is None


def test_kind_errors_are_fed_back_too(valid_answer: dict[str, Any]) -> None:
    wrong_kind = dict(valid_answer)
    wrong_kind["siren"] = {"value": "ACME", "quote": "SIREN : 732 829 320"}
    with StandIn(["not json at all", wrong_kind, valid_answer]) as server:
        ex = vllm_extractor(server.url, "m", max_attempts=3)
        fields = {f.name: f for f in ex.extract("doc-1", PAGES, SCHEMA)}
    assert len(server.requests) == 3
    msgs = [r["body"]["messages"][-1]["content"] for r in server.requests[1:]]
    assert "not JSON" in msgs[0]
    assert "siren: 'ACME' is not a valid siren" in msgs[1]
    assert fields["siren"].status == FOUND


def test_gives_up_with_a_clear_error_after_max_attempts(valid_answer: dict[str, Any]) -> None:
    bad = {"siren": {"value": 1, "quote": None}}
    with StandIn([bad, bad]) as server:
        ex = vllm_extractor(server.url, "m", max_attempts=2)
        with pytest.raises(FailedPrecondition) as err:
            ex.extract("doc-1", PAGES, SCHEMA)
    assert err.value.reason == "EXTRACTION_INVALID_OUTPUT"
    assert "after 2 attempts" in err.value.message and len(server.requests) == 2


def test_classify_is_constrained_to_the_flow_types() -> None:
    class T:
        def __init__(self, name: str, cues: list[str]) -> None:
            self.name, self.cues = name, cues

    with StandIn([{"type": "demande"}]) as server:
        ex = vllm_extractor(server.url, "m")
        name, conf = ex.classify(PAGES[0], [T("demande", ["sollicitons"]), T("rib", ["iban"])])
    assert (name, conf) == ("demande", 0.8)
    schema = server.requests[0]["body"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["type"]["enum"] == ["demande", "rib", ""]


def test_server_errors_are_unavailable() -> None:
    with StandIn([], status=503) as server:
        ex = vllm_extractor(server.url, "m")
        with pytest.raises(Unavailable) as err:
            ex.extract("doc-1", PAGES, SCHEMA)
    assert err.value.reason == "EXTRACTOR_UNAVAILABLE"
    ex = vllm_extractor("http://127.0.0.1:9/v1", "m")  # nothing listens on port 9
    with pytest.raises(Unavailable):
        ex.extract("doc-1", PAGES, SCHEMA)


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() <= before
