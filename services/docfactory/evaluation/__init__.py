"""Retrieval and answer evaluation on public datasets (``docfactory eval``).

- :mod:`docfactory.evaluation.datasets`: BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/test.tsv``) and SQuAD layout (paragraphs = documents, questions = queries) loaders.
- :mod:`docfactory.evaluation.metrics`: recall@k, MRR@k, nDCG@k (graded, trec_eval gains),
  latency percentiles, SQuAD answer normalisation (French and English), exact match and F1.
- :mod:`docfactory.evaluation.runner`: index a corpus once into an embedded store with the
  ingestion payload layout, run every search mode, print a table and write JSON.
"""
