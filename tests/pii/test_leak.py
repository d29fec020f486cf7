"""Leak test: with ``pii: redact_at_ingest`` no planted value reaches a chunk, a search result,
an answer or a prompt sent to the model; ``mask_in_answers`` keeps the chunks but masks what
the use case reads; ``allow`` changes nothing.

Real parts: a grpc.aio server on port 0 running every service under a policy file, the
embedded vector store, SQLite, Presidio with the French spaCy model, and an OpenAI-compatible
chat server on a real socket (the stand-in for vLLM) that records every prompt and echoes it
back, so a value in a prompt would also surface in the answer. Documents: real texts of
../shared/data with planted synthetic identifiers (docfactory.pii.evalset).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
import yaml

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.app import make_store, start_server
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.core.vectorstore import Scope
from docfactory.embedding.v1 import embedding_service_pb2 as emb_pb
from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
from docfactory.governance.audit import AuditLog
from docfactory.pii import checks, evalset
from tests.conftest import ROOT, shared_data
from tests.helpers import answer, md, search, upload

KEY = "key-pii-acme"


class _EchoChat(BaseHTTPRequestHandler):
    """OpenAI chat completions (SSE): records the request, streams the prompt back."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:  # /health and /v1/models, as vLLM serves them
        body = json.dumps({"object": "list", "data": [{"id": "mistral-small", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(req)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        echo = "D'après [1] : " + " ".join(m["content"] for m in req["messages"][1:])
        for i in range(0, len(echo), 200):
            chunk = {"choices": [{"index": 0, "delta": {"content": echo[i : i + 200]}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 50}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture
def chat() -> Iterator[str]:
    _EchoChat.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoChat)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _policy(path: Path) -> Path:
    base = {
        "tenant": "acme",
        "owner": "dpo@acme.example",
        "purpose": "pii leak test",
        "max_classification": "RESTRICTED",
        "allowed_models": "*",
        "human_review": "optional",
        "retention": "none",
    }
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "tenants": [{"id": "acme"}],
                "api_keys": [
                    {
                        "id": "app",
                        "tenant": "acme",
                        "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                    }
                ],
                "use_cases": [
                    {
                        **base,
                        "id": "uc-redact",
                        "allowed_collections": ["dossiers"],
                        "pii": "redact_at_ingest",
                    },
                    {
                        **base,
                        "id": "uc-mask",
                        "allowed_collections": ["rh"],
                        "pii": "mask_in_answers",
                    },
                    {**base, "id": "uc-plain", "allowed_collections": ["public"]},
                ],
            }
        )
    )
    return path


def _titled(sample: evalset.Sample, label: evalset.Label) -> bool:
    before = sample.text[: label.start].rstrip()
    return any(before.endswith(t) for t in evalset.TITLES)


def _guaranteed(sample: evalset.Sample) -> list[str]:
    """Planted values redaction must remove: every identifier, phone, e-mail, address, and the
    names that follow a civility. Names spaCy alone must find are measured by eval-pii
    (recall < 1), not promised here."""
    return [x.value for x in sample.labels if x.type != "PERSON" or _titled(sample, x)]


def _leaks(values: list[str], text: str) -> list[str]:
    flat = checks.compact(text).lower()
    return [v for v in values if v.lower() in text.lower() or checks.compact(v).lower() in flat]


@pytest.mark.slow
async def test_redacted_values_reach_no_chunk_result_answer_or_prompt(
    chat: str,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    samples = evalset.build(shared_data())
    redact, mask, plain = samples[0:6:2] + samples[31:32], samples[40:42], samples[50:51]
    settings = make_settings(
        policy_file=str(_policy(tmp_path / "policy.yaml")),
        generation={"urls": chat, "model": "mistral-small"},
    )
    planted = [v for s in redact for v in _guaranteed(s)]
    masked = [v for s in mask for v in _guaranteed(s)]
    assert len(planted) >= 12 and len(masked) >= 4
    ids_asked = [x for s in redact for x in s.labels if x.type in evalset.CHECK_DIGIT_TYPES][:4]
    caplog.set_level(logging.INFO)
    running = await start_server(settings, port=0)
    seen: list[str] = []  # every text a client received
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            docs: dict[str, str] = {}
            for coll, group in (("dossiers", redact), ("rh", mask), ("public", plain)):
                for i, s in enumerate(group):
                    f = tmp_path / f"{coll}-{i}.txt"
                    f.write_text(s.text, encoding="utf-8")
                    doc = (await upload(ch, f, key=KEY, collection=coll)).document
                    assert doc.state == 2 and doc.chunk_count >= 1, doc  # INDEXED
                    docs[doc.document_id] = coll
                    if coll == "public":
                        assert "pii.mode" not in doc.metadata
                        continue
                    assert doc.metadata["pii.mode"] == (
                        "redact_at_ingest" if coll == "dossiers" else "mask_in_answers"
                    )
                    assert int(doc.metadata["pii.count"]) >= len(_guaranteed(s))
                    seen.append(json.dumps(dict(doc.metadata)))
            vector = (
                (
                    await emb_grpc.EmbeddingServiceStub(ch).Embed(
                        emb_pb.EmbedRequest(texts=["dossier"], input_type=emb_pb.INPUT_TYPE_QUERY),
                        metadata=md(KEY),
                    )
                )
                .embeddings[0]
                .values
            )

            questions = [
                "Quel est le numéro de sécurité sociale du salarié ?",
                "Quel IBAN pour le virement du solde ?",
                "Quelle est l'adresse du siège et le numéro SIREN ?",
                "Comment contacter la personne : téléphone, courriel ?",
                # asking with the identifiers themselves: masked in the prompt too
                *[f"À qui appartient {x.value} ?" for x in ids_asked],
            ]
            for uc, coll in (("uc-redact", "dossiers"), ("uc-mask", "rh")):
                ids = [d for d, c in docs.items() if c == coll]
                every = await search(
                    ch, "dossier", key=KEY, use_case=uc, document_ids=ids, top_k=100,
                    mode=ans_pb.SEARCH_MODE_DENSE,
                )  # fmt: skip
                seen += [r.text for r in every.results]
                assert len(every.results) >= len(ids)
                for q in questions:
                    res = await search(ch, q, key=KEY, use_case=uc, top_k=10)
                    seen += [r.text for r in res.results]
                    text, cits, _ = await answer(ch, q, key=KEY, use_case=uc, top_k=4)
                    seen.append(text)
                    seen += [c.quote for c in cits]
            plain_res = await search(ch, "salarié", key=KEY, use_case="uc-plain", top_k=10)
    finally:
        await running.stop(0.5)

    prompts = [json.dumps(r, ensure_ascii=False) for r in _EchoChat.requests]
    assert len(prompts) >= 2 * len(questions) - 2  # the model was asked (unless no passage)
    assert any("[NIR]" in p or "[IBAN]" in p for p in prompts)  # placeholders, not values
    for label, texts in (("client-visible text", seen), ("prompt", prompts)):
        leaked = {v for t in texts for v in _leaks(planted + masked, t)}
        where = [t[:300] for t in texts if _leaks(planted + masked, t)][:1]
        assert not leaked, f"{label}: {len(leaked)} planted value(s) leaked: {where}"

    # Stored chunks: redacted for uc-redact's collection, intact (masked on read) for rh.
    store, _ = make_store(settings)
    try:
        hits = store.query(Scope(tenant="acme"), dense=list(vector), sparse=None, limit=1000)
    finally:
        store.close()
    by_coll: dict[str, list[dict[str, Any]]] = {}
    for h in hits:
        by_coll.setdefault(str(h.payload["collection"]), []).append(dict(h.payload))
    red = by_coll["dossiers"]
    assert not {v for p in red for v in _leaks(planted, str(p["text"]))}
    assert all(p["pii_mode"] == "redact_at_ingest" for p in red)
    spans = [f for p in red for f in p["pii"]]
    assert len(spans) >= len(planted) and {"FR_NIR", "IBAN_CODE"} <= {f["type"] for f in spans}
    for p in red:  # the findings are placeholders' spans in the stored text
        for f in p["pii"]:
            assert str(p["text"])[int(f["start"]) : int(f["end"])].startswith("[")
    rh_text = " ".join(str(p["text"]) for p in by_coll["rh"])
    assert set(_leaks(masked, rh_text)) == set(masked)  # kept at rest, masked on every read
    payload_meta = json.dumps([{k: v for k, v in h.payload.items() if k != "text"} for h in hits])
    assert not _leaks(planted + masked, payload_meta)

    # allow: the public document reads as written
    public_values = _guaranteed(plain[0])
    assert _leaks(public_values, " ".join(r.text for r in plain_res.results))

    # Audit and logs: counts and types, never a value.
    out = io.StringIO()
    AuditLog(make_engine(settings.resolved_database_url)).export_jsonl(out)
    assert out.getvalue() and not _leaks(planted + masked, out.getvalue())
    assert not _leaks(planted + masked, caplog.text)
    assert "PII redact_at_ingest" in caplog.text


@pytest.mark.slow
def test_embedded_default_never_loads_presidio(tmp_path: Path) -> None:
    """Without a policy asking for PII handling, ingestion and answers never import Presidio
    or load spaCy's NER model (a child process, so other tests' loads do not count)."""
    src = shared_data("travail-docs", "docx", "certificat_de_travail.docx")
    script = f"""
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import write_keys
from docfactory.app import start_server
from docfactory.core.config import load_settings
from tests.helpers import upload, search
import grpc

async def main():
    tmp = Path({str(tmp_path)!r})
    (tmp / "data").mkdir()
    keys = str(write_keys(tmp / "keys.yaml"))
    server = {{"host": "127.0.0.1", "port": 0}}
    s = load_settings(env={{}}, overrides={{"data_dir": str(tmp / "data"), "keys_file": keys,
        "server": server}})
    srv = await start_server(s, port=0)
    try:
        async with grpc.aio.insecure_channel(srv.address) as ch:
            await upload(ch, Path({str(src)!r}))
            res = await search(ch, "certificat de travail")
            assert res.results
    finally:
        await srv.stop(0.5)
    from docfactory.pii import detector
    print("PRESIDIO", "presidio_analyzer" in sys.modules, detector.loaded())

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PRESIDIO False False" in out.stdout, out.stdout
