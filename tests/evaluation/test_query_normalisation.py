"""Queries with French typography (non-breaking space before "?", a trailing space) are keyed
and looked up the same way by the evaluation and the service: no KeyError, same vector."""

from __future__ import annotations

import asyncio

from docfactory.core.text import normalize_query
from docfactory.embedding.adapters.models import Usem3Model
from docfactory.evaluation.runner import _embed_queries, _PrecomputedEmbedder


def test_normalize_query() -> None:
    assert normalize_query("Qui convoque le CSE\u00a0? ") == "Qui convoque le CSE ?"
    assert normalize_query("Délai\u202f:  quinze\tjours\n") == "Délai : quinze jours"
    assert normalize_query("e\u0301te\u0301") == "été"  # NFC


def test_precomputed_vectors_found_for_typographic_variants() -> None:
    raw = ["Qui convoque le CSE\u00a0?", "Quel est le délai de rétractation ? "]
    vectors = _embed_queries(Usem3Model(threads=1), raw, batch_size=8)
    emb = _PrecomputedEmbedder(vectors)
    for q in raw:
        v = asyncio.run(emb.embed_query(q))
        assert v == asyncio.run(emb.embed_query(normalize_query(q)))
        assert len(v) == 512
