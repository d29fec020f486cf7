"""Chunk sizes in the remote embedding model's own tokens: vLLM's POST /tokenize on an
OpenAI-compatible stand-in over a real socket; cached; the word approximation when the server
has no such endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from docfactory.core.config import EmbeddingConfig
from docfactory.embedding.adapters.models import OpenAIEmbeddingModel, RemoteTokenCounter


class _Handler(BaseHTTPRequestHandler):
    tokenize = True
    calls: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        return

    def _json(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "bge-m3"}]})

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(self.path)
        if self.path == "/v1/embeddings":
            data = [{"index": i, "embedding": [1.0, 0.5, 0.25]} for i, _ in enumerate(req["input"])]
            self._json(200, {"data": data})
        elif self.path == "/tokenize" and type(self).tokenize:
            assert req["model"] == "bge-m3"
            n = len(req["prompt"]) // 3 + 1  # a tokenizer unlike a word count
            self._json(200, {"count": n, "tokens": list(range(n)), "max_model_len": 8192})
        else:
            self._json(404, {"detail": "Not Found"})


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.calls = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_counts_come_from_the_serving_engine(server: str) -> None:
    _Handler.tokenize = True
    model = OpenAIEmbeddingModel(EmbeddingConfig(urls=(server,), model="bge-m3"))
    try:
        tok = model.tokenizer()
        assert isinstance(tok, RemoteTokenCounter)
        text = "Le délai de rétractation est de quinze jours calendaires."
        assert tok.count(text) == len(text) // 3 + 1 != int(len(text.split()) * 1.4)
        assert tok.count(text) == len(text) // 3 + 1
        assert _Handler.calls.count("/tokenize") == 1  # cached
    finally:
        model.close()


def test_falls_back_to_words_without_the_endpoint(server: str) -> None:
    _Handler.tokenize = False
    model = OpenAIEmbeddingModel(EmbeddingConfig(urls=(server,), model="bge-m3"))
    try:
        tok = model.tokenizer()
        assert tok.count("un deux trois quatre cinq") == 7  # 5 words x 1.4
        assert tok.count("six sept") == 2
        assert _Handler.calls.count("/tokenize") == 1  # not asked again once missing
    finally:
        model.close()
