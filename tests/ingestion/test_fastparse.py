"""The fast paths of fastparse.py give the elements and chunks of the ``partition.auto`` path.

Reference: the same parser with the fast paths switched off (every file through
``unstructured.partition.auto.partition``, as before). Compared on the text, Markdown, HTML,
CSV/TSV and JSON files of ../shared/data/formats and on Code civil articles (Markdown): every
element (type, text, page, depth), the document fields, and the chunks (ids, text, sections,
element types) cut with the embedded default's tokenizer. Fresh processes check that the NLP
pipeline is loaded only by formats that need it and without torch or transformers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from docfactory.chunking.service import Chunker, Element
from docfactory.core.config import ChunkingConfig, EmbeddingConfig
from docfactory.core.errors import DocfactoryError
from docfactory.ingestion.adapters import fastparse
from docfactory.ingestion.adapters.parser import ParsedDocument, UnstructuredParser
from tests.conftest import shared_data

MAX_BYTES = 200_000  # the book-length files and a 460 KB <pre> page exercise nothing more


def _formats_files() -> list[Path]:
    root = shared_data("formats")
    parser = UnstructuredParser()
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.stat().st_size == 0 or path.stat().st_size > MAX_BYTES:
            continue
        try:
            kind = parser.detect(path, path.name)
        except DocfactoryError:
            continue
        if kind in fastparse.FAST_PARTITIONERS:
            out.append(path)
    return out


@pytest.fixture(scope="module")
def civil_articles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    archive = shared_data("code-civil", "code-civil-2015.tar.gz")
    dest = tmp_path_factory.mktemp("civil")
    out: list[Path] = []
    with tarfile.open(archive) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".md")),
            key=lambda m: m.name,
        )
        for m in members[::140]:  # 20 articles across the books
            target = dest / f"{len(out):03d}-{Path(m.name).name}"
            src = tar.extractfile(m)
            assert src is not None
            target.write_bytes(src.read())
            out.append(target)
    return out


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    from docfactory.embedding.adapters.models import load_model

    return Chunker(load_model(EmbeddingConfig()).tokenizer(), ChunkingConfig())


def _outcome(parser: UnstructuredParser, path: Path) -> ParsedDocument | str:
    try:
        return parser.parse(path, path.name)
    except DocfactoryError as exc:
        return f"{type(exc).__name__}:{exc.reason}"


_ChunkKey = tuple[str, str, tuple[str, ...], tuple[str, ...]]


def _chunks(chunker: Chunker, doc: ParsedDocument) -> list[_ChunkKey]:
    elements = [Element(e.type, e.text, e.page_number, e.category_depth) for e in doc.elements]
    chunks = chunker.chunk("doc-1", 1, elements, chunker.options())
    return [(c.id, c.text, c.section_path, c.element_types) for c in chunks]


def _compare(paths: list[Path], chunker: Chunker, monkeypatch: pytest.MonkeyPatch) -> int:
    parser = UnstructuredParser(ocr_fallback=False)
    fast = {p: _outcome(parser, p) for p in paths}
    with monkeypatch.context() as m:
        m.setattr(fastparse, "FAST_PARTITIONERS", {})
        reference = {p: _outcome(parser, p) for p in paths}
    compared = 0
    for path in paths:
        got, want = fast[path], reference[path]
        assert type(got) is type(want), f"{path.name}: {got!r} != {want!r}"
        if isinstance(want, str):
            assert got == want, path.name
            continue
        assert isinstance(got, ParsedDocument)
        assert list(got.elements) == list(want.elements), path.name
        assert (got.mime_type, got.page_count, got.strategy) == (
            want.mime_type,
            want.page_count,
            want.strategy,
        ), path.name
        assert _chunks(chunker, got) == _chunks(chunker, want), path.name
        compared += 1
    return compared


@pytest.mark.slow
def test_formats_corpus_same_elements_and_chunks(
    chunker: Chunker, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _formats_files()
    kinds = {UnstructuredParser().detect(p, p.name) for p in paths}
    # the corpus has every fast format; a detection change would silently shrink the test
    assert {"TXT", "MD", "HTML", "CSV", "TSV", "JSON"} <= kinds, kinds
    assert _compare(paths, chunker, monkeypatch) >= 20


def test_code_civil_articles_same_elements_and_chunks(
    civil_articles: list[Path], chunker: Chunker, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _compare(civil_articles, chunker, monkeypatch) == len(civil_articles)


_PROBE = """
import json, sys
from pathlib import Path
from docfactory.ingestion.adapters import parser as P
parser = P.UnstructuredParser()
for name in sys.argv[1:]:
    doc = parser.parse(Path(name), Path(name).name)
    print(json.dumps({
        "elements": len(doc.elements),
        "nlp_loaded": P._NLP_READY,
        "torch": "torch" in sys.modules,
        "transformers": "transformers" in sys.modules,
    }))
"""


def test_nlp_loaded_only_for_formats_that_need_it(civil_articles: list[Path]) -> None:
    """A fresh process: a CSV file does not load the NLP pipeline, a Markdown article does
    (its paragraphs are classified), without presidio's transformers factory or torch."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            str(shared_data("formats", "stanley-cups.csv")),
            str(civil_articles[0]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    csv, md = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert csv["elements"] == 1 and csv["nlp_loaded"] is False
    assert md["elements"] >= 2 and md["nlp_loaded"] is True
    assert md["transformers"] is False and md["torch"] is False
