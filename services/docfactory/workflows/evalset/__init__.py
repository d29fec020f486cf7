"""Dossier extraction evaluation set (``docfactory eval-flow``): generator, labels, scoring.

Synthetic values in real public templates; see ``generate.py``. Only the generator code and
``spec.yaml`` are in the repository; the documents are built into a temporary/cache folder.
"""
