"""The demo's question on the demo's documents (``scripts/demo.sh``), over the real server on
the embedded default (extractive answers): the answer quotes conditions the documents state,
not their headings; questions the documents do not support still get "insufficient context"."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT, shared_data
from tests.helpers import answer, upload

DEMO_QUESTION = "Quelles sont les conditions pour réunir le CSE en visioconférence ?"
# What the two CSE guides state as conditions (the list): the employer's decision and
# the information in the convocation, what the equipment must guarantee, the voting conditions.
CONDITIONS = (
    "Décision de l’employeur",
    "Information du CSE dans la convocation",
    "identification",
    "participation",
    "retransmission",
    "Vérification du bon fonctionnement du matériel",
    "Ouverture du vote par le président",
    "Vote à bulletin secret",
    "Secret de l’identité du votant",
    "Confidentialité des données",
)
HEADINGS = (
    "Comment réunir le CSE par visioconférence",
    "Comment réunir le CSE pendant",
    "LE CHOIX DE LA VISIOCONFERENCE",
    "LES CONDITIONS DE VOTE",
    "16 juillet 2020",
)
UNRELATED = (
    "Quelle est la capitale de la Mongolie ?",
    "Comment préparer une pâte à crêpes ?",
    "Who won the football world cup in 1998?",
)


async def _upload_all(channel: grpc.aio.Channel, paths: list[Path]) -> None:
    """Upload each file into the ``demo`` collection, as ``scripts/demo.sh`` ingests them."""
    for path in paths:
        await upload(channel, path, collection="demo")


@pytest.mark.slow
async def test_demo_question_quotes_conditions_and_unrelated_questions_are_refused(
    channel: grpc.aio.Channel,
) -> None:
    sources = [
        shared_data("travail-docs", "pdf", "reunion-cse-visio.pdf"),
        shared_data("travail-docs", "pdf", "reunion-cse-synthese.pdf"),
        shared_data("travail-docs", "docx", "entretien_prealable_au_licenciement_personnel.docx"),
        shared_data("travail-docs", "docx", "demande_rdv_rupture_conventionnelle.docx"),
    ]
    await _upload_all(channel, sources)

    text, cits, summary = await answer(channel, DEMO_QUESTION, collections=["demo"])
    assert summary.extractive and not summary.insufficient_context, text
    quotes = [c.quote for c in cits]
    assert quotes and all(q for q in quotes)
    quoted = " ".join(quotes)
    assert any(cond in quoted for cond in CONDITIONS), quotes
    assert not any(h in quoted for h in HEADINGS), quotes
    # every quote is cited with its document, and shown verbatim in the answer text
    for c in cits:
        assert c.document_name.startswith("reunion-cse-"), c.document_name
        assert f"« {c.quote} » [{c.marker}]" in text

    for question in UNRELATED:
        text, cits, summary = await answer(channel, question, collections=["demo"])
        assert summary.insufficient_context, (question, text)
        assert list(cits) == [] and "[1]" not in text
        assert text.startswith(("Je ne sais pas", "I don't know")), text


DOCS_QUESTION = "Comment ingérer une archive de documents depuis MinIO ?"


@pytest.mark.slow
async def test_demo_on_the_project_guides_quotes_the_answer_not_the_question(
    channel: grpc.aio.Channel,
) -> None:
    """What ``make demo`` asks where ``../shared`` is absent (a user's machine): the guides'
    sentence on bulk ingestion from MinIO, not docs/README.md's example command, which holds
    the question word for word."""
    guides = sorted((ROOT / "docs").rglob("*.md"))
    assert len(guides) >= 9, guides
    await _upload_all(channel, guides)
    text, cits, summary = await answer(channel, DOCS_QUESTION, collections=["demo"])
    assert summary.extractive and not summary.insufficient_context, text
    quoted = " ".join(c.quote for c in cits)
    assert "docfactory ask" not in quoted, quoted
    assert "MinIO" in quoted and ("JobsService" in quoted or "IngestPrefix" in quoted), quoted
