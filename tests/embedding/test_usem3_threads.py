"""The embedded default's model runs one BLAS thread (issue 18): the vectors are those two
threads give (to float32 rounding: BLAS may sum in another order with another thread count, a
few 1e-8 apart, seen in a CI run), so the index and search results do not change."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from docfactory.embedding.adapters import usem3_cache
from docfactory.embedding.adapters.models import Usem3Model

TEXTS = [
    "Article 1 - Les lois sont exécutoires dans tout le territoire français. " * (1 + i % 7)
    + f"Alinéa {i}: la promulgation faite par le Président de la République."
    for i in range(40)
]


def test_one_blas_thread_gives_the_vectors_of_two() -> None:
    model = Usem3Model(threads=2)
    assert model.blas_threads == 1
    one = model.embed(TEXTS, query=False)
    two = usem3_cache.CachedUSE(threads=2).encode(TEXTS)
    assert one.shape == (len(TEXTS), 512)
    two32 = np.asarray(two, dtype=np.float32)
    np.testing.assert_allclose(one, two32, rtol=0, atol=1e-6)


def test_a_call_runs_one_blas_thread() -> None:
    model = Usem3Model(threads=2)
    seen: list[int] = []
    backend = model._model._model  # the numpy backend, built on first use
    original = backend._encode_batch

    def spy(*args: object) -> None:
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        original(*args)

    backend._encode_batch = spy
    model.embed(TEXTS[:3], query=False)
    assert seen and set(seen) == {1}
