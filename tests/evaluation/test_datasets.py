"""BEIR and SQuAD loaders on small synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docfactory.evaluation.datasets import detect_format, load_dataset


def _beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever."},
        {"_id": "d2", "title": "", "text": "Vitamin C and colds."},
        {"_id": "d3", "title": "T", "text": "Unrelated."},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [
        {"_id": "q1", "text": "Does aspirin reduce fever?"},
        {"_id": "q2", "text": "Vitamin C prevents colds."},
        {"_id": "q3", "text": "Not in the split."},
    ]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq2\td2\t1\n"
    )
    return root


def test_beir_layout(tmp_path: Path) -> None:
    root = _beir(tmp_path / "mini")
    assert detect_format(root) == "beir"
    ds = load_dataset(root)
    assert ds.format == "beir"
    assert ds.name == "mini"
    assert set(ds.queries) == {"q1", "q2"}  # only queries with qrels in the split
    assert ds.qrels == {"q1": {"d1": 2, "d3": 1}, "q2": {"d2": 1}}
    assert ds.corpus["d1"].passage == "Aspirin\nAspirin reduces fever."
    assert ds.corpus["d2"].passage == "Vitamin C and colds."
    assert ds.stats()["documents"] == 3
    with pytest.raises(ValueError, match=r"qrels/dev\.tsv"):
        load_dataset(root, split="dev")


def _squad(path: Path) -> Path:
    ctx1 = "Paris est la capitale de la France depuis 987."
    ctx2 = "La Loire est le plus long fleuve de France."
    data = {
        "version": "1.0",
        "data": [
            {
                "title": "France",
                "paragraphs": [
                    {
                        "context": ctx1,
                        "qas": [
                            {
                                "id": "a",
                                "question": "Quelle est la capitale de la France ?",
                                "answers": [{"text": "Paris", "answer_start": 0}],
                            },
                            {  # offset does not match the context: skipped
                                "id": "bad",
                                "question": "Depuis quand ?",
                                "answers": [{"text": "987", "answer_start": 3}],
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Loire",
                "paragraphs": [
                    {
                        "context": ctx2,
                        "qas": [
                            {
                                "id": "b",
                                "question": "Quel est le plus long fleuve ?",
                                "answers": [{"text": "La Loire", "answer_start": 0}],
                            }
                        ],
                    }
                ],
            },
        ],
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_squad_layout(tmp_path: Path) -> None:
    path = _squad(tmp_path / "mini.json")
    assert detect_format(path) == "squad"
    ds = load_dataset(path)
    assert ds.format == "squad"
    assert ds.skipped == 1
    assert set(ds.queries) == {"a", "b"}
    assert ds.qrels == {"a": {"0-0": 1}, "b": {"1-0": 1}}
    assert ds.answers["b"] == ["La Loire"]
    assert ds.corpus["0-0"].passage.startswith("Paris est la capitale")
    # A fixed slice: the first article only.
    first = load_dataset(path, max_articles=1)
    assert set(first.corpus) == {"0-0"}
    assert set(first.queries) == {"a"}


def test_detect_format_rejects_unknown(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError):
        detect_format(tmp_path / "x.txt")
    with pytest.raises(ValueError):
        detect_format(tmp_path)
