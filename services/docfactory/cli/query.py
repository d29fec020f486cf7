"""``docfactory search`` and ``docfactory ask`` (streamed, cited answer)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from docfactory.cli.session import QUERY_SERVICES, SEARCH_MODES, Session
from docfactory.core.config import Settings


def _citation_label(c: Any) -> str:
    label = str(c.document_name or c.document_id)
    if len(c.page_numbers):
        pages = list(c.page_numbers)
        label += f", p. {pages[0]}" if len(pages) == 1 else f", p. {pages[0]}-{pages[-1]}"
    if len(c.section_path):
        label += " — " + " > ".join(list(c.section_path)[-2:])
    return label


def _citation_dict(c: Any) -> dict[str, Any]:
    return {
        "marker": c.marker,
        "document_id": c.document_id,
        "document_name": c.document_name,
        "source_uri": c.source_uri,
        "pages": list(c.page_numbers),
        "section_path": list(c.section_path),
        "quote": c.quote,
        "score": round(c.score, 4),
        "chunk_id": c.chunk_id,
    }


async def cmd_search(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.answering.v1 import answering_service_pb2 as pb
    from docfactory.answering.v1 import answering_service_pb2_grpc as pb_grpc

    async with Session(
        settings, ns.address, ns.api_key, QUERY_SERVICES, daemon=ns.daemon
    ) as session:
        stub = pb_grpc.AnsweringServiceStub(session.channel)
        resp = await stub.Search(
            pb.SearchRequest(
                query=ns.query,
                collections=ns.collection or [],
                top_k=ns.top_k,
                use_case=ns.use_case,
                mode=SEARCH_MODES.get(ns.mode or "", 0),  # type: ignore[arg-type]
            ),
            metadata=session.metadata,
            timeout=120,
        )
    if ns.json:
        print(
            json.dumps(
                {
                    "took_ms": round(resp.took_ms, 1),
                    "results": [
                        {
                            "score": round(r.score, 4),
                            "text": r.text,
                            "citation": _citation_dict(r.citation),
                        }
                        for r in resp.results
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    for i, r in enumerate(resp.results, 1):
        snippet = " ".join(r.text.split())[:240]
        print(f"{i}. [{r.score:.3f}] {_citation_label(r.citation)}\n   {snippet}")
    if not resp.results:
        print("no result")
    return 0


async def cmd_ask(ns: argparse.Namespace, settings: Settings) -> int:
    from docfactory.answering.v1 import answering_service_pb2 as pb
    from docfactory.answering.v1 import answering_service_pb2_grpc as pb_grpc

    async with Session(
        settings, ns.address, ns.api_key, QUERY_SERVICES, daemon=ns.daemon
    ) as session:
        stub = pb_grpc.AnsweringServiceStub(session.channel)
        call = stub.Answer(
            pb.AnswerRequest(
                question=ns.question,
                collections=ns.collection or [],
                top_k=ns.top_k,
                use_case=ns.use_case,
                mode=SEARCH_MODES.get(ns.mode or "", 0),  # type: ignore[arg-type]
            ),
            metadata=session.metadata,
            timeout=600,
        )
        citations: list[Any] = []
        summary: Any = None
        async for msg in call:
            kind = msg.WhichOneof("content")
            if kind == "delta":
                if ns.json:
                    print(json.dumps({"delta": msg.delta.text}, ensure_ascii=False), flush=True)
                else:
                    print(msg.delta.text, end="", flush=True)
            elif kind == "citations":
                citations = list(msg.citations.citations)
                if ns.json:
                    print(
                        json.dumps(
                            {"citations": [_citation_dict(c) for c in citations]},
                            ensure_ascii=False,
                        ),
                        flush=True,
                    )
            elif kind == "summary":
                s = summary = msg.summary
                if ns.json:
                    print(
                        json.dumps(
                            {
                                "summary": {
                                    "generator": s.generator,
                                    "extractive": s.extractive,
                                    "insufficient_context": s.insufficient_context,
                                    "retrieval_ms": round(s.retrieval_ms, 1),
                                    "first_token_ms": round(s.first_token_ms, 1),
                                    "total_ms": round(s.total_ms, 1),
                                    "language": s.language,
                                    "pending_review": s.pending_review,
                                    "review_id": s.review_id,
                                }
                            },
                            ensure_ascii=False,
                        ),
                        flush=True,
                    )
                elif s.pending_review:
                    print(
                        f"Réponse retenue pour relecture humaine (review {s.review_id}) : "
                        "GovernanceService.GetReviewedAnswer la délivrera une fois approuvée."
                        if s.language == "fr"
                        else f"Answer held for human review (review {s.review_id}): "
                        "GovernanceService.GetReviewedAnswer returns it once approved."
                    )
                else:
                    print("\n\nSources :" if s.language == "fr" else "\n\nSources:")
                    for c in citations:
                        print(f"  [{c.marker}] {_citation_label(c)}")
                    if not citations:
                        print("  (none)")
                    print(
                        f"\n({s.generator}; retrieval {s.retrieval_ms:.0f} ms, "
                        f"total {s.total_ms:.0f} ms)"
                    )
        if summary is not None and summary.answer_id and _wants_feedback(ns):
            await ask_feedback(session, int(summary.answer_id), french=summary.language != "en")
    return 0


FEEDBACK_PROMPT_FR = "Utile ? [o/n] minutes gagnées, commentaire (Entrée : passer) > "
FEEDBACK_PROMPT_EN = "Useful? [y/n] minutes saved, comment (Enter: skip) > "
_FEEDBACK_LINE = re.compile(
    r"^\s*(?P<verdict>oui|non|yes|no|o|n|y)?\b[\s,;]*(?P<minutes>\d+(?:[.,]\d+)?)?\b[\s,;]*"
    r"(?P<comment>.*)$",
    re.IGNORECASE,
)


def _wants_feedback(ns: argparse.Namespace) -> bool:
    """The prompt is for a person at a terminal: never with --no-feedback, --json, or when
    stdin is not a TTY (a pipe, a script, CI)."""
    if getattr(ns, "no_feedback", False) or ns.json:
        return False
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def parse_feedback(line: str) -> tuple[bool | None, float, str] | None:
    """``"o 15 très clair"`` -> (True, 15.0, "très clair"); an empty line -> None (skipped).
    The verdict, the minutes and the comment are each optional, in that order."""
    if not line.strip():
        return None
    m = _FEEDBACK_LINE.match(line)
    if m is None:  # pragma: no cover - the pattern matches any line
        return None
    word = (m.group("verdict") or "").lower()
    useful = True if word in ("o", "oui", "y", "yes") else False if word else None
    minutes = float(m.group("minutes").replace(",", ".")) if m.group("minutes") else 0.0
    comment = m.group("comment").strip()
    if useful is None and not minutes and not comment:
        return None
    return useful, minutes, comment


async def ask_feedback(session: Session, answer_id: int, *, french: bool = True) -> None:
    """One line read from the terminal, sent as MeasurementService.SubmitFeedback on the answer
    (AnswerSummary.answer_id). A failure is reported, never fatal (the answer was given)."""
    import asyncio

    import grpc

    from docfactory.measurement.v1 import measurement_service_pb2 as mpb
    from docfactory.measurement.v1 import measurement_service_pb2_grpc as mpb_grpc

    prompt = FEEDBACK_PROMPT_FR if french else FEEDBACK_PROMPT_EN
    try:
        line = await asyncio.to_thread(input, "\n" + prompt)
    except (EOFError, KeyboardInterrupt):
        print()
        return
    parsed = parse_feedback(line)
    if parsed is None:
        return
    useful, minutes, comment = parsed
    verdict = mpb.VERDICT_UNSPECIFIED
    if useful is not None:
        verdict = mpb.VERDICT_USEFUL if useful else mpb.VERDICT_NOT_USEFUL
    try:
        await mpb_grpc.MeasurementServiceStub(session.channel).SubmitFeedback(
            mpb.SubmitFeedbackRequest(
                answer_audit_seq=answer_id,
                verdict=verdict,
                time_saved_minutes=min(minutes, 24 * 60.0),
                comment=comment[:4000],
            ),
            metadata=session.metadata,
            timeout=30,
        )
    except grpc.aio.AioRpcError as exc:
        print(f"feedback not recorded: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return
    print("Merci, avis enregistré." if french else "Thank you, feedback recorded.")
