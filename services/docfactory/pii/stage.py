"""Where personal-data handling meets the pipeline: one call at ingestion (after chunking,
before embedding), two on the answer path (search results / prompt passages, and the question
sent to the model).

Modes (``pii`` of a use case in the governance policy):

- ``allow``: nothing is done, nothing is loaded.
- ``mask_in_answers``: chunks keep their text; ingestion stores the findings (type, span,
  score) in each chunk's payload; Search results, prompt passages (hence answers and quotes)
  of such a use case get placeholders instead of the values.
- ``redact_at_ingest``: the values are replaced by placeholders before embedding, so they
  exist in no chunk, vector, search result, prompt or answer.

Ingestion is not tied to a use case: a collection is redacted (or analysed) at ingestion when
a use case of its tenant that may read it asks for it (``Policy.pii_ingestion_mode``: the
strictest wins). Chunks indexed before the policy asked for it carry no PII payload: the answer
path then detects live, so the guarantee holds for them too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from docfactory.pii.model import (
    MODES,
    PLACEHOLDERS,
    Finding,
    PiiMode,
    counts,
    replace_spans,
)

if TYPE_CHECKING:
    from docfactory.governance.gate import GovernanceGate, Grant

log = logging.getLogger("docfactory.pii")

#: Payload keys of a chunk (vector store).
PAYLOAD_FINDINGS = "pii"  # [{"type", "start", "end", "score"}], spans in the stored text
PAYLOAD_MODE = "pii_mode"  # the mode applied at ingestion
#: Document metadata keys.
META_MODE = "pii.mode"
META_TOTAL = "pii.count"  # values redacted (redact_at_ingest) or found (mask_in_answers)


class _HasText(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def text(self) -> str: ...


C = TypeVar("C", bound=_HasText)


def _as_mode(value: object) -> PiiMode:
    return MODES[MODES.index(value)] if value in MODES else "allow"  # type: ignore[arg-type]


@dataclass(frozen=True)
class IngestPii:
    """What the ingestion stage did to one document's chunks."""

    mode: PiiMode
    findings: Mapping[str, Sequence[Finding]] = field(default_factory=dict)  # by chunk id
    counts: Mapping[str, int] = field(default_factory=dict)

    def payload(self, chunk_id: str) -> dict[str, Any]:
        """Extra payload of a chunk (types, spans in the stored text, scores; never a value)."""
        if self.mode == "allow":
            return {}
        return {
            PAYLOAD_MODE: self.mode,
            PAYLOAD_FINDINGS: [f.as_payload() for f in self.findings.get(chunk_id, ())],
        }

    def metadata(self, metadata: Mapping[str, str]) -> dict[str, str]:
        """The document's metadata with the counts (``pii.count``, ``pii.count.<TYPE>``)."""
        if self.mode == "allow":
            return dict(metadata)
        out = {k: v for k, v in metadata.items() if not k.startswith("pii.")}  # ours, not forged
        out[META_MODE] = self.mode
        out[META_TOTAL] = str(sum(self.counts.values()))
        for t, n in self.counts.items():
            out[f"{META_TOTAL}.{t}"] = str(n)
        return out


def ingestion_mode(gate: GovernanceGate | None, tenant: str, collection: str) -> PiiMode:
    if gate is None or gate.policy is None:
        return "allow"
    return _as_mode(gate.policy.current().pii_ingestion_mode(tenant, collection))


async def process_chunks(
    gate: GovernanceGate | None, tenant: str, collection: str, chunks: Sequence[C]
) -> tuple[list[C], IngestPii]:
    """The ingestion hook: chunks as they must be embedded and stored, and what was found.

    ``chunks`` are frozen dataclasses with a ``text`` field (``ChunkData``); with
    ``redact_at_ingest`` their text is replaced."""
    mode = ingestion_mode(gate, tenant, collection)
    if mode == "allow" or not chunks:
        return list(chunks), IngestPii("allow")
    from docfactory.pii.detector import default_detector

    def run() -> tuple[list[C], list[list[Finding]]]:
        det = default_detector()
        found = det.analyze_many([c.text for c in chunks])
        if mode != "redact_at_ingest":
            return list(chunks), found
        out: list[C] = []
        placed: list[list[Finding]] = []
        for c, fs in zip(chunks, found, strict=True):
            text, spans = det.replace(c.text, fs)
            out.append(cast(C, dataclasses.replace(cast(Any, c), text=text)))
            placed.append(spans)
        return out, placed

    new_chunks, findings = await asyncio.to_thread(run)
    n = counts(findings)
    log.info(
        "PII %s: %d chunk(s) of tenant %s / %s, %s",
        mode,
        len(chunks),
        tenant,
        collection,
        ", ".join(f"{t}={k}" for t, k in n.items()) or "none found",
    )
    by_id = {c.id: f for c, f in zip(new_chunks, findings, strict=True)}
    return new_chunks, IngestPii(mode, by_id, n)


# -- answer path ---------------------------------------------------------------------------


def answer_mode(grant: Grant | None) -> PiiMode:
    """The ``pii`` of the use case a request runs under ("allow" without a policy)."""
    decision = grant.decision if grant is not None else None
    return _as_mode(getattr(decision, "pii", "allow"))


async def texts_for(grant: Grant | None, payloads: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``text`` of each hit's payload as the use case may see it: with ``mask_in_answers``
    or ``redact_at_ingest``, values become placeholders (from the spans stored at ingestion;
    chunks indexed without them are analysed now)."""
    texts = [str(p.get("text", "")) for p in payloads]
    if answer_mode(grant) == "allow":
        return texts
    out: list[str | None] = [None] * len(texts)
    todo: list[int] = []
    for i, (text, p) in enumerate(zip(texts, payloads, strict=True)):
        if p.get(PAYLOAD_MODE) == "redact_at_ingest":
            out[i] = text  # the stored text holds placeholders only
        elif isinstance(p.get(PAYLOAD_FINDINGS), list):
            try:
                spans = [Finding.from_payload(d) for d in p[PAYLOAD_FINDINGS]]
            except (KeyError, TypeError, ValueError):
                todo.append(i)
                continue
            out[i] = replace_spans(text, spans, PLACEHOLDERS)
        else:
            todo.append(i)
    if todo:
        masked = await mask_texts([texts[i] for i in todo])
        for i, m in zip(todo, masked, strict=True):
            out[i] = m
    return [t if t is not None else "" for t in out]


async def question_for(grant: Grant | None, question: str) -> str:
    """The question as it may be put in a prompt for the use case (values masked)."""
    if answer_mode(grant) == "allow":
        return question
    return (await mask_texts([question]))[0]


async def mask_texts(texts: Sequence[str]) -> list[str]:
    from docfactory.pii.detector import default_detector

    def run() -> list[str]:
        det = default_detector()
        return [
            replace_spans(t, f, PLACEHOLDERS)
            for t, f in zip(texts, det.analyze_many(texts), strict=True)
        ]

    return await asyncio.to_thread(run)
