"""Extraction through vLLM's OpenAI-compatible server with structured outputs.

Request: ``POST {base_url}/chat/completions`` with ``response_format = {"type": "json_schema",
"json_schema": {"name": ..., "schema": ..., "strict": true}}`` (vLLM's structured outputs; the
schema constrains decoding). The answer is validated with ``jsonschema`` and per field kind (a
SIREN must read as nine digits, a date as a date...); an invalid answer is sent back to the
model with the validation errors, up to ``max_attempts`` requests in all.

Every value must come with a quote that occurs verbatim in the document (after collapsing
whitespace) and that contains the value; otherwise the field is UNSUPPORTED (value kept for the
reviewer, no evidence). A null value is MISSING.

One request per document, its first 60,000 characters (``_MAX_DOC_CHARS``): a value further in
a longer document comes back MISSING, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from docfactory.core.errors import FailedPrecondition, Unavailable
from docfactory.workflows.extract.french import FINDERS, Candidate, find_amount
from docfactory.workflows.extract.model import (
    FOUND,
    MISSING,
    UNKNOWN_TYPE,
    UNSUPPORTED,
    Evidence,
    ExtractedField,
    field_kind,
    schema_fields,
)

SYSTEM_PROMPT = (
    "You extract fields from a French business document. Answer only with JSON matching the "
    "schema. For each field give its value and `quote`: the exact passage of the document "
    "(copied character for character) that contains the value. If the document does not give "
    "the field, set value and quote to null. Never invent a value."
)
_MAX_DOC_CHARS = 60_000


def response_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema the model's answer must follow: one {value, quote} object per field."""
    props: dict[str, Any] = {}
    for name, prop in schema_fields(schema):
        text: dict[str, Any] = {"type": "string"}
        for key in ("pattern", "enum", "maxLength"):
            if key in prop:
                text[key] = prop[key]
        # nullable as anyOf (the form every structured-output backend accepts)
        value = {"anyOf": [text, {"type": "null"}]}
        entry: dict[str, Any] = {
            "type": "object",
            "properties": {
                "value": value,
                "quote": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["value", "quote"],
            "additionalProperties": False,
        }
        if isinstance(prop.get("description") or prop.get("title"), str):
            entry["description"] = str(prop.get("description") or prop.get("title"))
        props[name] = entry
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def _squash(text: str) -> tuple[str, list[int]]:
    """Whitespace collapsed to single spaces, and for each kept character its original offset."""
    out: list[str] = []
    offsets: list[int] = []
    prev_space = True
    for i, ch in enumerate(text):
        if ch.isspace():
            if not prev_space:
                out.append(" ")
                offsets.append(i)
            prev_space = True
        else:
            out.append(ch)
            offsets.append(i)
            prev_space = False
    return "".join(out), offsets


def locate_quote(pages: Sequence[str], quote: str) -> tuple[int, int, int] | None:
    """(0-based page, start, end) of ``quote`` in the pages, whitespace-normalised, or None."""
    needle = " ".join(quote.split())
    if not needle:
        return None
    for p, page in enumerate(pages):
        squashed, offsets = _squash(page)
        i = squashed.find(needle)
        if i >= 0:
            return p, offsets[i], offsets[i + len(needle) - 1] + 1
    return None


def normalise_value(kind: str, value: str) -> Candidate | None:
    """The value read as its kind (None when it does not read as one)."""
    if kind == "text":
        v = " ".join(value.split())
        return Candidate(0, len(value), v) if v else None
    cands = find_amount(value, bare=True) if kind == "amount_eur" else FINDERS[kind](value)
    return cands[0] if cands else None


class VllmExtractor:
    """Implements ``Extractor`` against a vLLM (or any OpenAI-compatible) server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_attempts: int = 3,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url.rstrip("/")
        self.url = (url if url.endswith("/v1") else url + "/v1") + "/chat/completions"
        self.model = model
        self.max_attempts = max(1, max_attempts)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def close(self) -> None:
        self._client.close()

    # -- protocol ---------------------------------------------------------------------------

    def classify(self, text: str, doc_types: Sequence[Any]) -> tuple[str, float]:
        names = [str(dt.name) for dt in doc_types]
        if not names:
            return UNKNOWN_TYPE, 0.0
        lines = [
            f"- {dt.name}: {', '.join(map(str, getattr(dt, 'cues', ()) or ()))}" for dt in doc_types
        ]
        schema = {
            "type": "object",
            "properties": {"type": {"enum": [*names, UNKNOWN_TYPE]}},
            "required": ["type"],
            "additionalProperties": False,
        }
        messages = [
            {
                "role": "system",
                "content": "Classify the document into one of these types (cues in brackets), "
                'or "" if none fits:\n' + "\n".join(lines),
            },
            {"role": "user", "content": text[:_MAX_DOC_CHARS]},
        ]
        answer = self._structured(messages, schema, "document_type", lambda _a: [])
        name = str(answer.get("type") or "")
        return (name, 0.8) if name in names else (UNKNOWN_TYPE, 0.0)

    def extract(
        self, document_id: str, pages: Sequence[str], schema: Mapping[str, Any]
    ) -> list[ExtractedField]:
        fields = schema_fields(schema)
        rschema = response_schema(schema)
        doc = "\n\n".join(f"--- page {i + 1} ---\n{p}" for i, p in enumerate(pages))
        guide = "\n".join(
            f"- {name}: {prop.get('title') or name}"
            + (f" ({prop['description']})" if prop.get("description") else "")
            + (f" [{field_kind(prop)}]" if field_kind(prop) != "text" else "")
            for name, prop in fields
        )
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT + "\nFields:\n" + guide},
            {"role": "user", "content": doc[:_MAX_DOC_CHARS]},
        ]

        def kind_errors(answer: Mapping[str, Any]) -> list[str]:
            errs = []
            for name, prop in fields:
                value = (answer.get(name) or {}).get("value")
                kind = field_kind(prop)
                if value is not None and normalise_value(kind, str(value)) is None:
                    errs.append(f"{name}: {value!r} is not a valid {kind}")
            return errs

        answer = self._structured(messages, rschema, "fields", kind_errors)
        out = []
        for name, prop in fields:
            item = answer.get(name) or {}
            out.append(self._field(document_id, pages, name, field_kind(prop), item))
        return out

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _field(
        document_id: str, pages: Sequence[str], name: str, kind: str, item: Mapping[str, Any]
    ) -> ExtractedField:
        raw, quote = item.get("value"), item.get("quote")
        if raw is None or str(raw).strip() == "":
            return ExtractedField(name, None, None, 0.0, MISSING)
        cand = normalise_value(kind, str(raw))
        value = cand.value if cand is not None else str(raw)
        where = locate_quote(pages, str(quote)) if quote else None
        if where is None or cand is None:
            return ExtractedField(name, value, None, 0.2, UNSUPPORTED)
        page, start, end = where
        passage = pages[page][start:end]
        # the quote must hold the value itself, not only exist somewhere in the document
        if kind == "text":
            held = " ".join(value.split()).casefold() in " ".join(passage.split()).casefold()
        else:
            found = (
                find_amount(passage, bare=True) if kind == "amount_eur" else FINDERS[kind](passage)
            )
            held = any(c.value == value for c in found)
        if not held:
            return ExtractedField(name, value, None, 0.2, UNSUPPORTED)
        confidence = 0.9 if cand.valid else 0.6
        return ExtractedField(
            name, value, Evidence(document_id, page + 1, start, end, passage), confidence, FOUND
        )

    def _structured(
        self,
        messages: list[dict[str, str]],
        schema: Mapping[str, Any],
        name: str,
        extra_check: Any,
    ) -> dict[str, Any]:
        import jsonschema

        validator = jsonschema.Draft202012Validator(schema)
        history = list(messages)
        last_error = ""
        for _attempt in range(self.max_attempts):
            body = {
                "model": self.model,
                "messages": history,
                "temperature": 0,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": True},
                },
            }
            content = self._post(body)
            errors: list[str]
            try:
                answer = json.loads(content)
            except json.JSONDecodeError as exc:
                errors = [f"the answer is not JSON: {exc}"]
            else:
                errors = [
                    f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                    for e in sorted(validator.iter_errors(answer), key=lambda e: list(e.path))
                ]
                if not errors:
                    errors = list(extra_check(answer))
                if not errors:
                    return dict(answer)
            last_error = "; ".join(errors)[:2000]
            history += [
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": "Your answer does not validate: "
                    + last_error
                    + ". Answer again with JSON that matches the schema.",
                },
            ]
        raise FailedPrecondition(
            f"the model's answer did not validate after {self.max_attempts} attempts: {last_error}",
            reason="EXTRACTION_INVALID_OUTPUT",
        )

    def _post(self, body: Mapping[str, Any]) -> str:
        try:
            resp = self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"extraction model unreachable at {self.url}: {exc}", reason="EXTRACTOR_UNAVAILABLE"
            ) from exc
        if resp.status_code >= 500 or resp.status_code == 429:
            raise Unavailable(
                f"extraction model answered HTTP {resp.status_code}: {resp.text[:300]}",
                reason="EXTRACTOR_UNAVAILABLE",
            )
        if resp.status_code >= 400:
            raise FailedPrecondition(
                f"extraction model refused the request (HTTP {resp.status_code}): "
                f"{resp.text[:300]}",
                reason="EXTRACTOR_REQUEST_REFUSED",
            )
        try:
            data = resp.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise Unavailable(
                f"extraction model answer is not a chat completion: {resp.text[:300]}",
                reason="EXTRACTOR_BAD_RESPONSE",
            ) from exc
        return str(content or "")
