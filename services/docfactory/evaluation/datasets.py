"""Evaluation datasets: BEIR layout and SQuAD layout, detected from the path.

BEIR (``corpus.jsonl`` with ``_id``/``title``/``text``, ``queries.jsonl`` with ``_id``/``text``,
``qrels/<split>.tsv`` with a header and ``query-id corpus-id score``): queries are only those
that have qrels in the split; graded relevance scores are kept (``score > 0`` is relevant).
BEIR corpora are passage-level: one document = one passage (title and text together).

SQuAD (one JSON file ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``):
each paragraph is a document, each question a query whose only relevant document is its
paragraph (grade 1); the gold answers are kept for answer evaluation. A question whose answer
text is not found at its ``answer_start`` offset in the context is skipped (PIAF v1.0 has two).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Dataset", "Document", "detect_format", "load_beir", "load_dataset", "load_squad"]


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""

    @property
    def passage(self) -> str:
        """What is embedded and indexed: title and text as one passage."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class Dataset:
    name: str
    format: str  # "beir" or "squad"
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> document id -> grade
    answers: dict[str, list[str]] = field(default_factory=dict)  # SQuAD gold answers
    skipped: int = 0  # SQuAD questions dropped (answer offset does not match the context)

    def stats(self) -> Mapping[str, int]:
        return {
            "documents": len(self.corpus),
            "queries": len(self.queries),
            "qrels": sum(len(v) for v in self.qrels.values()),
            "skipped_queries": self.skipped,
        }


def detect_format(path: Path) -> str:
    """``"beir"`` for a folder with ``corpus.jsonl``, ``"squad"`` for a JSON file."""
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return "beir"
        candidates = sorted(path.glob("*.json"))
        if len(candidates) == 1:
            return "squad"
        raise ValueError(f"{path}: no corpus.jsonl (BEIR) nor a single SQuAD .json file")
    if path.suffix == ".json":
        return "squad"
    raise ValueError(f"{path}: expected a BEIR folder or a SQuAD .json file")


def load_dataset(path: Path, *, split: str = "test", max_articles: int = 0) -> Dataset:
    fmt = detect_format(path)
    if fmt == "beir":
        return load_beir(path, split=split)
    if path.is_dir():
        path = sorted(path.glob("*.json"))[0]
    return load_squad(path, max_articles=max_articles)


def _jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_beir(path: Path, *, split: str = "test") -> Dataset:
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.exists():
        raise ValueError(f"{path}: no qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_file.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    corpus = {
        str(d["_id"]): Document(str(d["_id"]), str(d.get("text") or ""), str(d.get("title") or ""))
        for d in _jsonl(path / "corpus.jsonl")
    }
    all_queries = {str(q["_id"]): str(q["text"]) for q in _jsonl(path / "queries.jsonl")}
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    qrels = {qid: rel for qid, rel in qrels.items() if qid in queries}
    return Dataset(path.name, "beir", corpus, queries, qrels)


def load_squad(path: Path, *, max_articles: int = 0) -> Dataset:
    """SQuAD-format file; ``max_articles`` > 0 keeps only the first articles (a fixed slice)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    articles = data["data"][:max_articles] if max_articles > 0 else data["data"]
    corpus: dict[str, Document] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    answers: dict[str, list[str]] = {}
    skipped = 0
    # The paragraph alone is the document (answer offsets refer to it; no article title).
    for a_i, article in enumerate(articles):
        for p_i, paragraph in enumerate(article["paragraphs"]):
            context = str(paragraph["context"])
            doc_id = f"{a_i}-{p_i}"
            corpus[doc_id] = Document(doc_id, context)
            for qa in paragraph.get("qas") or []:
                golds = qa.get("answers") or []
                ok = bool(golds) and all(
                    context[int(g["answer_start"]) : int(g["answer_start"]) + len(g["text"])]
                    == g["text"]
                    for g in golds
                )
                if not ok:
                    skipped += 1
                    continue
                qid = str(qa.get("id") or f"{doc_id}-{len(queries)}")
                queries[qid] = str(qa["question"])
                qrels[qid] = {doc_id: 1}
                answers[qid] = [str(g["text"]) for g in golds]
    return Dataset(path.stem, "squad", corpus, queries, qrels, answers, skipped)
