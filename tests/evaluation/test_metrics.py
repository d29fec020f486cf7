"""Retrieval and answer metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from docfactory.evaluation.metrics import (
    exact_match,
    f1_score,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
)


def test_recall_counts_relevant_in_top_k_over_all_relevant() -> None:
    qrels = {"a": 1, "b": 1, "c": 0}
    ranked = ["x", "a", "c", "y", "b"]
    assert recall_at_k(ranked, qrels, 1) == 0.0
    assert recall_at_k(ranked, qrels, 2) == 0.5
    assert recall_at_k(ranked, qrels, 4) == 0.5  # "c" has grade 0: not relevant
    assert recall_at_k(ranked, qrels, 5) == 1.0
    assert recall_at_k(ranked, {}, 5) == 0.0


def test_mrr_is_reciprocal_rank_of_first_relevant_within_k() -> None:
    qrels = {"b": 1, "d": 2}
    assert mrr_at_k(["a", "b", "d"], qrels, 10) == 0.5
    assert mrr_at_k(["d", "b"], qrels, 10) == 1.0
    assert mrr_at_k(["a", "c", "e", "b"], qrels, 3) == 0.0
    assert mrr_at_k(["a", "c", "e", "b"], qrels, 4) == 0.25


def test_ndcg_with_graded_relevance_linear_gains() -> None:
    # qrels: a=3, b=2, c=1; ranking c, x, a, b
    qrels = {"a": 3, "b": 2, "c": 1}
    ranked = ["c", "x", "a", "b"]
    dcg = 1 / math.log2(2) + 3 / math.log2(4) + 2 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, qrels, 10) == pytest.approx(dcg / idcg)
    # cut at 2: only "c" counts; the ideal is cut at 2 as well
    assert ndcg_at_k(ranked, qrels, 2) == pytest.approx(1.0 / (3 + 2 / math.log2(3)))
    assert ndcg_at_k(["a", "b", "c"], qrels, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], qrels, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_single_relevant_document_ndcg_and_duplicates() -> None:
    # One relevant document at rank 3: nDCG = 1/log2(4) = 0.5
    assert ndcg_at_k(["x", "y", "g"], {"g": 1}, 10) == pytest.approx(0.5)
    # Several passages of one document count once: "x" twice is one rank.
    assert mrr_at_k(["x", "x", "g"], {"g": 1}, 10) == 0.5
    assert recall_at_k(["x", "x", "g"], {"g": 1}, 2) == 1.0


def test_percentile_interpolates() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(range(1, 101), 95) == pytest.approx(95.05)


def test_french_normalisation_strips_case_accents_punctuation_articles() -> None:
    assert normalize_answer("L'Église de la Madeleine !") == "eglise madeleine"
    assert normalize_answer("les Élections d’Europe") == "elections europe"
    assert normalize_answer("Un  été, à Paris.") == "ete a paris"
    assert normalize_answer("du pain et des jeux") == "pain et jeux"
    assert normalize_answer("The Cat sat", "en") == "cat sat"


def test_french_exact_match_and_f1() -> None:
    golds = ["la Révolution française", "Révolution"]
    assert exact_match("révolution Française", golds) == 1.0
    assert exact_match("la révolution de 1789", golds) == 0.0
    # pred "revolution 1789" vs gold "revolution": P=1/2, R=1 -> 2/3 (best gold)
    assert f1_score("la révolution de 1789", golds) == pytest.approx(2 / 3)
    assert f1_score("rien", golds) == 0.0
    assert f1_score("", golds) == 0.0
    # articles alone normalise to empty on both sides: counted as a match (SQuAD rule)
    assert exact_match("le", ["la"]) == 1.0
