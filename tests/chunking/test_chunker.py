"""Chunker: token budgets with the embedding model's tokenizer, overlap, pages, sections."""

from __future__ import annotations

import itertools

import pytest

from docfactory.chunking.service import Chunker, ChunkOptions, Element
from docfactory.core.config import ChunkingConfig
from docfactory.core.errors import InvalidArgument
from docfactory.core.vectorstore import point_id
from docfactory.embedding.adapters.models import Usem3Model


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(Usem3Model().tokenizer(), ChunkingConfig())


def _doc() -> list[Element]:
    body = (
        "Le contrat de travail peut être rompu d'un commun accord entre l'employeur et le salarié. "
        "Cette rupture conventionnelle est soumise à homologation. "
    )
    return [
        Element("Title", "Livre I — Relations individuelles", 1, 0),
        Element("Title", "Chapitre 1 — Rupture", 1, 1),
        Element("NarrativeText", body * 3, 1),
        Element("NarrativeText", body * 2, 2),
        Element("Title", "Chapitre 2 — Démission", 2, 1),
        Element("NarrativeText", "La démission doit être claire et non équivoque. " * 4, 3),
        Element("Footer", "Page 3", 3),
    ]


def test_by_title_keeps_sections_pages_and_types(chunker: Chunker) -> None:
    opts = chunker.options(
        strategy="by_title", max_tokens=128, overlap_tokens=16, combine_under_tokens=0
    )
    chunks = chunker.chunk("doc-1", 1, _doc(), opts)
    assert len(chunks) >= 3
    for c in chunks:
        assert c.token_count <= 128 + 8  # joined pieces are re-counted exactly
        assert c.document_id == "doc-1" and c.document_version == 1
    first, last = chunks[0], chunks[-1]
    assert first.section_path == ("Livre I — Relations individuelles", "Chapitre 1 — Rupture")
    assert last.section_path == ("Livre I — Relations individuelles", "Chapitre 2 — Démission")
    assert last.page_numbers == (2, 3) or last.page_numbers == (3,)
    assert "Title" in first.element_types and "NarrativeText" in first.element_types
    assert all("Page 3" not in c.text for c in chunks)  # footers skipped
    # a title never ends a chunk whose body belongs to another section
    assert not any(c.text.rstrip().endswith("Chapitre 2 — Démission") for c in chunks)


def test_basic_ignores_sections(chunker: Chunker) -> None:
    opts = chunker.options(strategy="basic", max_tokens=2000)
    chunks = chunker.chunk("doc-1", 1, _doc(), opts)
    assert len(chunks) == 1
    assert chunks[0].page_numbers == (1, 2, 3)


def test_long_element_split_with_overlap(chunker: Chunker) -> None:
    sentences = [
        f"La phrase numéro {i} décrit une règle différente du règlement." for i in range(60)
    ]
    opts = chunker.options(strategy="basic", max_tokens=64, overlap_tokens=16)
    chunks = chunker.chunk("d", 2, [Element("NarrativeText", " ".join(sentences), 4)], opts)
    assert len(chunks) > 5
    counter = Usem3Model().tokenizer()
    assert all(counter.count(c.text) <= 64 + 4 for c in chunks)
    # consecutive windows share text (overlap), and nothing is lost
    for a, b in itertools.pairwise(chunks):
        tail = a.text.split(". ")[-1]
        assert tail and tail in b.text
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)
    assert all(c.page_numbers == (4,) for c in chunks)


def test_deterministic_ids(chunker: Chunker) -> None:
    opts = chunker.options()
    a = chunker.chunk("doc-9", 3, _doc(), opts)
    b = chunker.chunk("doc-9", 3, _doc(), opts)
    assert (
        [c.id for c in a] == [c.id for c in b] == [point_id("doc-9", 3, i) for i in range(len(a))]
    )
    c = chunker.chunk("doc-9", 4, _doc(), opts)
    assert not {x.id for x in a} & {x.id for x in c}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"strategy": "semantic"}, "INVALID_STRATEGY"),
        ({"max_tokens": 4}, "INVALID_MAX_TOKENS"),
        ({"max_tokens": 64, "overlap_tokens": 40}, "INVALID_OVERLAP"),
    ],
)
def test_invalid_options(chunker: Chunker, kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        chunker.options(**kwargs)  # type: ignore[arg-type]
    assert err.value.reason == reason


def test_chunk_text_paragraphs(chunker: Chunker) -> None:
    text = "Premier paragraphe.\n\nDeuxième paragraphe.\n\n\nTroisième."
    chunks = chunker.chunk_text("t", 1, text, ChunkOptions(max_tokens=16, combine_under_tokens=0))
    assert "Premier" in chunks[0].text and "Troisième" in chunks[-1].text


def test_header_only_document_still_chunks(chunker: Chunker) -> None:
    els = [Element("Header", "Rapport environnemental 2022", 1), Element("Footer", "p. 104", 1)]
    chunks = chunker.chunk("h", 1, els, chunker.options())
    assert len(chunks) == 1 and "Rapport environnemental" in chunks[0].text
