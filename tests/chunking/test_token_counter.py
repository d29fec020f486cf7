"""The chunking process counts tokens with the embedding model's tokenizer alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from docfactory.core.config import EmbeddingConfig
from docfactory.embedding.adapters.models import load_token_counter, sentence_transformer_path

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "",
    "bonjour le monde",
    "Le contrat de travail peut être rompu d'un commun accord entre l'employeur et le salarié.",
    "Article L1237-11 — 3 200,50 € HT; e-mail: rh@exemple.fr (voir §4.2).",
    "Un texte long, bien au-delà des 128 jetons auxquels le tokenizer sauvegardé tronque. " * 20,
]


def test_tokenizer_alone_counts_as_the_model() -> None:
    from transformers import AutoTokenizer

    counter = load_token_counter(EmbeddingConfig(backend="sentence-transformers"))
    path = sentence_transformer_path("")
    assert counter.name == path.name
    # what SentenceTransformer(path).tokenizer is (without loading the weights here)
    model_tok = AutoTokenizer.from_pretrained(str(path))
    expected = [len(model_tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    assert [counter.count(t) for t in TEXTS] == expected
    assert expected[-1] > 128  # neither truncated nor padded to the saved 128


def test_chunking_process_imports_no_model_runtime() -> None:
    code = (
        "import json, sys\n"
        "from docfactory.core.config import EmbeddingConfig\n"
        "from docfactory.embedding.adapters.models import load_token_counter\n"
        "c = load_token_counter(EmbeddingConfig(backend='sentence-transformers'))\n"
        "print(json.dumps({'n': c.count('bonjour le monde'),\n"
        "  'loaded': sorted(m for m in ('torch', 'sentence_transformers', 'transformers')\n"
        "                   if m in sys.modules)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] > 1
    assert out["loaded"] == []
