"""Tables kept as tables: a real spreadsheet's tables come out of the parser as Markdown tables
(from unstructured's HTML structure); the chunker splits a large one by groups of whole rows,
header repeated on each part, never inside a row; table cells are found by search."""

from __future__ import annotations

import grpc
import pytest

from docfactory.chunking.service import Chunker, Element
from docfactory.core.config import ChunkingConfig
from docfactory.embedding.adapters.models import Usem3Model
from docfactory.ingestion.adapters.parser import ParsedDocument, UnstructuredParser
from docfactory.ingestion.adapters.tables import html_table_to_markdown
from tests.conftest import shared_data
from tests.helpers import search, upload

XLSX = ("formats", "2023-half-year-analyses-by-segment.xlsx")


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(Usem3Model().tokenizer(), ChunkingConfig())


@pytest.fixture(scope="module")
def parsed() -> ParsedDocument:
    src = shared_data(*XLSX)
    return UnstructuredParser().parse(src, src.name)


def test_html_table_to_markdown() -> None:
    html = (
        "<table><tr><th>Nom</th><th colspan='2'>Montant | TTC</th><td></td></tr>"
        "<tr><td>Loyer\n janvier</td><td>1 200</td><td>€</td><td></td></tr>"
        "<tr><td></td><td></td><td></td><td></td></tr></table>"
    )
    assert html_table_to_markdown(html) == (
        "| Nom | Montant \\| TTC |  |\n| --- | --- | --- |\n| Loyer janvier | 1 200 | € |"
    )
    assert html_table_to_markdown("<p>pas de tableau</p>") == ""


def test_spreadsheet_tables_are_markdown_tables(parsed: ParsedDocument) -> None:
    tables = [e for e in parsed.elements if e.type == "Table"]
    assert len(tables) >= 5 and parsed.metadata["tables"] == str(len(tables))
    for t in tables:
        lines = t.text.split("\n")
        assert lines[0].startswith("| ") and lines[1].startswith("| --- |"), t.text[:200]
        assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert any("| Nespresso | 3128 | 678 |" in t.text for t in tables)


def test_large_table_split_by_rows_with_header_repeated(
    chunker: Chunker, parsed: ParsedDocument
) -> None:
    table = max((e for e in parsed.elements if e.type == "Table"), key=lambda e: len(e.text))
    lines = table.text.split("\n")
    header, rows = lines[:2], lines[2:]
    assert len(rows) >= 8
    opts = chunker.options(strategy="by_title", max_tokens=64, overlap_tokens=8)
    elements = [
        Element("Title", "3.1 Operating segments", 1),
        Element("NarrativeText", "Operating segments of the first half of 2023.", 1),
        Element("Table", table.text, 1),
        Element("NarrativeText", "In millions of CHF.", 1),
    ]
    chunks = chunker.chunk("doc-tables", 1, elements, opts)
    parts = [c for c in chunks if "Table" in c.element_types]
    assert len(parts) >= 3, [c.text for c in chunks]
    seen: list[str] = []
    for c in parts:
        block = c.text[c.text.index(header[0]) :].split("\n\n")[0].split("\n")
        assert block[:2] == header, c.text  # the header heads every part
        body = block[2:]
        assert body and all(line in rows for line in body), c.text  # only whole rows
        seen.extend(body)
    assert seen == rows  # every row once, in order, none cut
    # a small table is not split and keeps its rows whole next to the text around it
    small = chunker.chunk("doc-small", 1, elements[1:3], chunker.options(max_tokens=1024))
    assert len(small) == 1 and table.text in small[0].text


@pytest.mark.slow
async def test_table_cells_are_searchable(channel: grpc.aio.Channel) -> None:
    r = await upload(channel, shared_data(*XLSX), collection="tables")
    assert r.document.chunk_count >= 1
    res = await search(channel, "Nespresso 3128", collections=["tables"])
    texts = [h.text for h in res.results[:3]]
    assert any("| Nespresso | 3128 | 678 |" in t for t in texts), texts
