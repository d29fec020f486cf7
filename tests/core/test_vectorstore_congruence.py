"""Every ``VectorStore`` backend that runs in-process must behave the same.

Backends: ``QdrantStore`` in memory (``location=":memory:"``), ``QdrantStore`` local on-disk
mode (``path=``) and ``EdgeStore`` (Qdrant Edge shard). The same cases run on each, and a
cross-backend test checks that random data gives the same top-k on all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from docfactory.core.errors import InvalidArgument, Unavailable
from docfactory.core.vectorstore import (
    HYBRID_WEIGHTS,
    ChunkPoint,
    Hit,
    MetadataFilter,
    QdrantStore,
    Scope,
    Sparse,
    VectorStore,
    point_id,
)
from docfactory.core.vectorstore_edge import EdgeStore

COLL = "chunks_test"
BACKENDS = ("qdrant-memory", "qdrant-local", "edge")
ON_DISK = ("qdrant-local", "edge")


def open_store(kind: str, root: Path) -> VectorStore:
    if kind == "qdrant-memory":
        return QdrantStore(collection=COLL, location=":memory:")
    if kind == "qdrant-local":
        return QdrantStore(collection=COLL, path=root / "qdrant-local")
    if kind == "edge":
        return EdgeStore(path=root / "edge", collection=COLL)
    raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[VectorStore]:
    s = open_store(backend, tmp_path)
    try:
        yield s
    finally:
        s.close()


# --------------------------------------------------------------------------- helpers


def unit(*xs: float) -> list[float]:
    v = np.asarray(xs, dtype=np.float64)
    return [float(x) for x in v / np.linalg.norm(v)]


def chunk(
    doc: str,
    index: int,
    dense: Sequence[float],
    *,
    tenant: str = "t-a",
    version: int = 1,
    collection: str = "c1",
    classification: int = 1,
    sparse: Mapping[int, float] | None = None,
    text: str = "",
) -> ChunkPoint:
    payload: dict[str, Any] = {
        "tenant": tenant,
        "collection": collection,
        "document_id": doc,
        "document_version": version,
        "classification": classification,
        "pages": [index + 1],
        "section_path": ["root", f"s{index}"],
        "text": text or f"{doc} v{version} chunk {index}",
    }
    sp = (
        Sparse(indices=list(sparse.keys()), values=list(sparse.values()))
        if sparse is not None
        else None
    )
    # The id includes the tenant so two tenants may hold the same document id.
    return ChunkPoint(
        id=point_id(f"{tenant}/{doc}", version, index),
        dense=list(dense),
        payload=payload,
        sparse=sp,
    )


def four(i: int) -> list[float]:
    """A distinct 4-d unit vector per small integer."""
    return unit(1.0, 0.1 * (i + 1), 0.05 * ((i * 7) % 5), 0.02 * i)


def docs_of(hits: Sequence[Hit]) -> set[str]:
    return {str(h.payload["document_id"]) for h in hits}


def q(
    store: VectorStore,
    scope: Scope,
    *,
    dense: Sequence[float] | None = None,
    sparse: Mapping[int, float] | None = None,
    limit: int = 50,
    mode: str = "dense",
) -> list[Hit]:
    sp = Sparse(list(sparse.keys()), list(sparse.values())) if sparse is not None else None
    return store.query(scope, dense=dense, sparse=sp, limit=limit, mode=mode)


# --------------------------------------------------------------------------- basic contract


def test_upsert_then_count(store: VectorStore) -> None:
    pts = [chunk("d1", i, four(i)) for i in range(5)]
    assert store.upsert(pts, 4) == 5
    assert store.count(Scope(tenant="t-a")) == 5
    assert store.count(Scope(tenant="t-b")) == 0
    assert store.upsert([], 4) == 0


def test_payload_roundtrip(store: VectorStore) -> None:
    p = chunk("d1", 0, four(0), text="Bonjour, l'été à Paris")
    store.upsert([p], 4)
    (hit,) = q(store, Scope(tenant="t-a"), dense=four(0), limit=3)
    assert hit.id == p.id
    assert dict(hit.payload) == dict(p.payload)
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_tenant_isolation(store: VectorStore) -> None:
    pts = []
    for tenant in ("t-a", "t-b"):
        pts += [
            chunk(
                "same-doc",
                i,
                four(i),
                tenant=tenant,
                sparse={10 + i: 1.0, 99: 0.5},
                text="identical text",
            )
            for i in range(6)
        ]
    store.upsert(pts, 4)
    assert store.count(Scope(tenant="t-a")) == 6
    assert store.count(Scope(tenant="t-b")) == 6
    for tenant in ("t-a", "t-b"):
        for mode in ("dense", "sparse", "hybrid"):
            hits = q(
                store, Scope(tenant=tenant), dense=four(2), sparse={12: 1.0, 99: 1.0}, mode=mode
            )
            assert hits, mode
            assert {h.payload["tenant"] for h in hits} == {tenant}, mode
            assert len(hits) <= 6
    assert q(store, Scope(tenant="t-c"), dense=four(0)) == []
    assert store.count(Scope(tenant="t-c")) == 0


def test_collection_filter(store: VectorStore) -> None:
    pts = [chunk(f"d{i}", 0, four(i), collection="c1" if i % 2 else "c2") for i in range(8)]
    store.upsert(pts, 4)
    hits = q(store, Scope(tenant="t-a", collections=["c1"]), dense=four(0))
    assert docs_of(hits) == {"d1", "d3", "d5", "d7"}
    assert store.count(Scope(tenant="t-a", collections=["c2"])) == 4
    assert store.count(Scope(tenant="t-a", collections=["c1", "c2"])) == 8
    assert store.count(Scope(tenant="t-a", collections=["nope"])) == 0


def test_metadata_filter(store: VectorStore) -> None:
    pts = []
    for i in range(8):
        p = chunk(f"d{i}", 0, four(i))
        payload = {
            **p.payload,
            "file_type": "pdf" if i < 4 else "docx",
            "language": "fr" if i % 2 else "en",
            "has_table": int(i in (1, 5)),
            "ocr": int(i == 3),
            "ingested_at": 1_700_000_000 + i * 100,
        }
        pts.append(ChunkPoint(id=p.id, dense=p.dense, payload=payload, sparse=p.sparse))
    legacy = chunk("old", 0, four(9))  # indexed before the fields existed
    store.upsert([*pts, legacy], 4)

    def docs(**kw: Any) -> set[str]:
        scope = Scope(tenant="t-a", filter=MetadataFilter(**kw))
        assert store.count(scope) == len(docs_of(q(store, scope, dense=four(0))))
        return docs_of(q(store, scope, dense=four(0)))

    assert docs(file_types=("pdf",)) == {"d0", "d1", "d2", "d3"}
    assert docs(file_types=("pdf", "docx"), languages=("fr",)) == {"d1", "d3", "d5", "d7"}
    assert docs(has_tables=True) == {"d1", "d5"}
    assert docs(has_tables=False, file_types=("docx",)) == {"d4", "d6", "d7"}
    assert docs(ocr=True) == {"d3"}
    assert docs(ingested_after=1_700_000_200, ingested_before=1_700_000_500) == {"d2", "d3", "d4"}
    assert docs(ingested_before=1_700_000_100) == {"d0"}
    assert "old" in docs_of(q(store, Scope(tenant="t-a"), dense=four(0)))  # no filter: all


def test_document_ids_filter(store: VectorStore) -> None:
    pts = [chunk(f"d{i}", j, four(i + j)) for i in range(4) for j in range(3)]
    store.upsert(pts, 4)
    scope = Scope(tenant="t-a", document_ids=["d0", "d2"])
    assert docs_of(q(store, scope, dense=four(1))) == {"d0", "d2"}
    assert store.count(scope) == 6
    sp = q(store, Scope(tenant="t-a", document_ids=["d3"]), dense=four(1), mode="hybrid")
    assert docs_of(sp) == {"d3"}


def test_classification_ceiling(store: VectorStore) -> None:
    pts = [chunk(f"d{c}", 0, four(c), classification=c) for c in range(5)]
    store.upsert(pts, 4)
    assert docs_of(q(store, Scope(tenant="t-a", max_classification=2), dense=four(4))) == {
        "d0",
        "d1",
        "d2",
    }
    assert store.count(Scope(tenant="t-a", max_classification=2)) == 3
    assert store.count(Scope(tenant="t-a", max_classification=1)) == 2
    assert store.count(Scope(tenant="t-a", max_classification=0)) == 5  # 0 = no ceiling
    assert store.count(Scope(tenant="t-a", max_classification=9)) == 5


def test_set_classification_moves_a_document_under_ceilings(store: VectorStore) -> None:
    pts = [chunk("d1", i, four(i), classification=3) for i in range(3)]
    pts += [chunk("d1", i, four(i), tenant="t-b", classification=3) for i in range(2)]
    store.upsert(pts, 4)
    public = Scope(tenant="t-a", max_classification=1)
    assert store.count(public) == 0
    assert store.set_classification("t-a", "d1", 1) == 3
    assert store.count(public) == 3
    hits = q(store, public, dense=four(0))
    assert {int(h.payload["classification"]) for h in hits} == {1}
    assert {h.id for h in hits} == {p.id for p in pts[:3]}  # same points, vectors untouched
    assert store.count(Scope(tenant="t-b", max_classification=1)) == 0  # other tenant intact
    assert store.set_classification("t-a", "missing", 1) == 0


def test_delete_document_all_versions(store: VectorStore) -> None:
    pts = [chunk("d1", i, four(i), version=v) for v in (1, 2) for i in range(3)]
    pts += [chunk("d2", i, four(i)) for i in range(2)]
    pts += [chunk("d1", i, four(i), tenant="t-b") for i in range(3)]  # same doc id, tenant B
    store.upsert(pts, 4)
    assert store.delete_document("t-a", "d1") == 6
    assert store.count(Scope(tenant="t-a")) == 2
    assert store.count(Scope(tenant="t-a", document_ids=["d1"])) == 0
    assert store.count(Scope(tenant="t-b", document_ids=["d1"])) == 3  # other tenant untouched
    assert store.delete_document("t-a", "d1") == 0
    assert store.delete_document("t-a", "missing") == 0


def test_delete_keep_version(store: VectorStore) -> None:
    old = [chunk("d1", i, four(i), version=1) for i in range(4)]
    new = [chunk("d1", i, four(i), version=2) for i in range(3)]
    store.upsert(old + new, 4)
    assert store.count(Scope(tenant="t-a")) == 7
    assert store.delete_document("t-a", "d1", keep_version=2) == 4
    hits = q(store, Scope(tenant="t-a"), dense=four(0))
    assert {h.payload["document_version"] for h in hits} == {2}
    assert {h.id for h in hits} == {p.id for p in new}
    assert store.delete_document("t-a", "d1", keep_version=2) == 0


def test_idempotent_reupsert(store: VectorStore) -> None:
    pts = [chunk("d1", i, four(i), sparse={i: 1.0}) for i in range(5)]
    store.upsert(pts, 4)
    store.upsert(pts, 4)
    assert store.count(Scope(tenant="t-a")) == 5
    # Re-upsert with a changed payload replaces it.
    changed = [chunk("d1", 0, four(0), text="changed")]
    store.upsert(changed, 4)
    assert store.count(Scope(tenant="t-a")) == 5
    (top,) = q(store, Scope(tenant="t-a"), dense=four(0), limit=1)
    assert top.id == pts[0].id and top.payload["text"] == "changed"


# --------------------------------------------------------------------------- ranking

RANK_VECTORS = {
    "a": unit(1, 0, 0, 0),
    "b": unit(0.95, 0.31, 0, 0),
    "x": unit(0.8, 0.6, 0, 0),
    "y": unit(0.6, 0.8, 0, 0),
    "z": unit(0.3, 0.95, 0, 0),
    "c": unit(0, 1, 0, 0),
    "w": unit(-1, 0, 0.1, 0),
}
QUERY = [1.0, 0.0, 0.0, 0.0]


def test_dense_ranking_order(store: VectorStore) -> None:
    store.upsert([chunk(name, 0, v) for name, v in RANK_VECTORS.items()], 4)
    hits = q(store, Scope(tenant="t-a"), dense=QUERY, limit=10)
    assert [h.payload["document_id"] for h in hits] == ["a", "b", "x", "y", "z", "c", "w"]
    expected = [float(np.dot(RANK_VECTORS[str(h.payload["document_id"])], QUERY)) for h in hits]
    assert [h.score for h in hits] == pytest.approx(expected, abs=1e-5)
    assert len(q(store, Scope(tenant="t-a"), dense=QUERY, limit=3)) == 3


def test_sparse_ranking_idf(store: VectorStore) -> None:
    # term 1 occurs everywhere (low IDF), term 2 only in "rare": with IDF the rare-term
    # document wins although "common" has the larger raw weight.
    pts = [
        chunk("common", 0, four(0), sparse={1: 2.0}),
        chunk("rare", 0, four(1), sparse={1: 0.1, 2: 1.0}),
        chunk("f1", 0, four(2), sparse={1: 1.0, 3: 1.0}),
        chunk("f2", 0, four(3), sparse={1: 1.0, 4: 1.0}),
        chunk("nosparse", 0, four(4)),
    ]
    store.upsert(pts, 4)
    hits = q(store, Scope(tenant="t-a"), sparse={1: 1.0, 2: 1.0}, mode="sparse")
    names = [h.payload["document_id"] for h in hits]
    assert names[0] == "rare"
    assert names[1] == "common"
    assert "nosparse" not in names
    # No sparse query vector: nothing to match.
    assert q(store, Scope(tenant="t-a"), sparse=None, mode="sparse") == []


def _hybrid_points() -> list[ChunkPoint]:
    # dense order for QUERY: a, b, x, y, z, c ; sparse order for {7: 1}: c, b.
    sparse = {"c": {7: 2.0}, "b": {7: 1.0}}
    return [
        chunk(name, 0, v, sparse=sparse.get(name, {8: 1.0}))
        for name, v in RANK_VECTORS.items()
        if name != "w"
    ]


def test_hybrid_rrf(store: VectorStore) -> None:
    store.upsert(_hybrid_points(), 4)
    scope = Scope(tenant="t-a")
    dense_hits = q(store, scope, dense=QUERY, mode="dense")
    sparse_hits = q(store, scope, sparse={7: 1.0}, mode="sparse")
    assert [h.payload["document_id"] for h in sparse_hits] == ["c", "b"]
    hits = q(store, scope, dense=QUERY, sparse={7: 1.0}, mode="hybrid", limit=10)
    # Weighted RRF (k=2): 0-based rank r scores w/(r+2) in each list (dense, sparse weights).
    wd, ws = HYBRID_WEIGHTS
    expected = {
        "b": wd / 3 + ws / 3,
        "c": wd / 7 + ws / 2,
        "a": wd / 2,
        "x": wd / 4,
        "y": wd / 5,
        "z": wd / 6,
    }
    order = sorted(expected, key=lambda n: -expected[n])
    assert [h.payload["document_id"] for h in hits] == order
    # engines differ slightly in how they scale weighted RRF scores; the order is the contract
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert {h.id for h in hits} == {h.id for h in dense_hits} | {h.id for h in sparse_hits}
    # Hybrid falls back to one side when the other query vector is missing.
    assert [h.id for h in q(store, scope, dense=QUERY, mode="hybrid")] == [h.id for h in dense_hits]
    assert [h.id for h in q(store, scope, sparse={7: 1.0}, mode="hybrid")] == [
        h.id for h in sparse_hits
    ]


def test_hybrid_top_hit_equal_across_backends(tmp_path: Path) -> None:
    tops = {}
    for kind in BACKENDS:
        s = open_store(kind, tmp_path / kind)
        try:
            s.upsert(_hybrid_points(), 4)
            hits = q(s, Scope(tenant="t-a"), dense=QUERY, sparse={7: 1.0}, mode="hybrid", limit=3)
            tops[kind] = [h.id for h in hits]
        finally:
            s.close()
    assert len(set(map(tuple, tops.values()))) == 1, tops


# --------------------------------------------------------------------------- edge cases


def test_empty_store(store: VectorStore) -> None:
    scope = Scope(tenant="t-a")
    for mode in ("dense", "sparse", "hybrid"):
        assert q(store, scope, dense=QUERY, sparse={1: 1.0}, mode=mode) == []
    assert store.count(scope) == 0
    assert store.delete_document("t-a", "d1") == 0


def test_missing_tenant(store: VectorStore) -> None:
    with pytest.raises(InvalidArgument) as exc:
        q(store, Scope(tenant=""), dense=QUERY)  # empty store: still refused
    assert exc.value.reason == "NO_TENANT"
    store.upsert([chunk("d1", 0, four(0))], 4)
    for call in (
        lambda: q(store, Scope(tenant=""), dense=QUERY),
        lambda: q(store, Scope(tenant=""), sparse={1: 1.0}, mode="sparse"),
        lambda: store.count(Scope(tenant="")),
        lambda: store.delete_document("", "d1"),
    ):
        with pytest.raises(InvalidArgument) as exc:
            call()
        assert exc.value.reason == "NO_TENANT"
    assert store.count(Scope(tenant="t-a")) == 1


def test_missing_tenant_before_first_upsert(store: VectorStore) -> None:
    """count/delete without a tenant must be refused even while the store is empty."""
    with pytest.raises(InvalidArgument):
        store.count(Scope(tenant=""))
    with pytest.raises(InvalidArgument):
        store.delete_document("", "d1")


def test_invalid_mode_and_missing_vector(store: VectorStore) -> None:
    store.upsert([chunk("d1", 0, four(0))], 4)
    with pytest.raises(InvalidArgument) as exc:
        q(store, Scope(tenant="t-a"), dense=QUERY, mode="fuzzy")
    assert exc.value.reason == "INVALID_SEARCH_MODE"
    with pytest.raises(InvalidArgument) as exc:
        q(store, Scope(tenant="t-a"), dense=None, mode="dense")
    assert exc.value.reason == "NO_QUERY_VECTOR"


def test_concurrent_writes_and_reads(store: VectorStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for b in range(5):
                store.upsert([chunk(f"d{t}-{b}", i, four(i)) for i in range(4)], 4)
                q(store, Scope(tenant="t-a"), dense=four(t), limit=5)
                store.count(Scope(tenant="t-a"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert store.count(Scope(tenant="t-a")) == 6 * 5 * 4


@pytest.mark.parametrize("kind", ON_DISK)
def test_reopen_persists_and_checks_dimension(kind: str, tmp_path: Path) -> None:
    s = open_store(kind, tmp_path)
    s.upsert([chunk("d1", i, four(i)) for i in range(3)], 4)
    s.close()
    s = open_store(kind, tmp_path)
    try:
        assert s.count(Scope(tenant="t-a")) == 3
        assert q(s, Scope(tenant="t-a"), dense=four(0), limit=1)[0].id == chunk("d1", 0, four(0)).id
        with pytest.raises(InvalidArgument) as exc:
            s.upsert([chunk("d9", 0, [1.0] * 8)], 8)
        assert exc.value.reason == "DIMENSION_MISMATCH"
    finally:
        s.close()


def test_edge_second_open_is_refused(tmp_path: Path) -> None:
    s = EdgeStore(path=tmp_path, collection=COLL)
    try:
        s.upsert([chunk("d1", 0, four(0))], 4)
        with pytest.raises(Unavailable) as exc:
            EdgeStore(path=tmp_path, collection=COLL)
        assert exc.value.reason == "VECTOR_STORE_LOCKED"
    finally:
        s.close()


# --------------------------------------------------------------------------- cross-backend


def _random_points(rng: np.random.Generator, n: int, dim: int, tenants: int) -> list[ChunkPoint]:
    vecs = rng.standard_normal((n, dim))
    pts = []
    for i in range(n):
        pts.append(
            chunk(
                f"doc{i // 5}",
                i % 5,
                [float(x) for x in vecs[i]],
                tenant=f"t{i % tenants}",
                classification=int(rng.integers(0, 4)),
                collection=f"c{i % 2}",
            )
        )
    return pts


def _all_backends(tmp_path: Path, fn: Callable[[VectorStore], Any]) -> dict[str, Any]:
    out = {}
    for kind in BACKENDS:
        s = open_store(kind, tmp_path / kind)
        try:
            out[kind] = fn(s)
        finally:
            s.close()
    return out


def test_cross_backend_dense_top5(tmp_path: Path) -> None:
    rng = np.random.default_rng(1234)
    dim, tenants = 64, 3
    pts = _random_points(rng, 300, dim, tenants)
    queries = [
        (
            f"t{int(rng.integers(0, tenants))}",
            [float(x) for x in rng.standard_normal(dim)],
            int(rng.integers(0, 4)),
        )
        for _ in range(20)
    ]

    def run(s: VectorStore) -> list[list[str]]:
        s.upsert(pts, dim)
        res = []
        for tenant, vec, ceiling in queries:
            res.append([h.id for h in q(s, Scope(tenant=tenant), dense=vec, limit=5)])
            res.append(
                [
                    h.id
                    for h in q(
                        s, Scope(tenant=tenant, max_classification=ceiling), dense=vec, limit=5
                    )
                ]
            )
        return res

    results = _all_backends(tmp_path, run)
    # Brute force reference.
    mat = np.asarray([p.dense for p in pts])
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    ref = []
    for tenant, vec, ceiling in queries:
        scores = mat @ (np.asarray(vec) / np.linalg.norm(vec))
        for ceil in (0, ceiling):
            ok = [
                i
                for i, p in enumerate(pts)
                if p.payload["tenant"] == tenant
                and (not ceil or p.payload["classification"] <= ceil)
            ]
            ref.append([pts[i].id for i in sorted(ok, key=lambda i: -scores[i])[:5]])
    for kind, res in results.items():
        assert res == ref, kind


def test_edge_optimize_keeps_results(tmp_path: Path) -> None:
    s = EdgeStore(path=tmp_path, collection=COLL)
    try:
        assert s.optimize() is False  # nothing created yet
        s.upsert([chunk(name, 0, v) for name, v in RANK_VECTORS.items()], 4)
        s.upsert([chunk("old", i, four(i)) for i in range(10)], 4)
        before = [h.id for h in q(s, Scope(tenant="t-a"), dense=QUERY)]
        assert s.delete_document("t-a", "old") == 10
        s.optimize()
        assert s.count(Scope(tenant="t-a")) == len(RANK_VECTORS)
        after = [h.id for h in q(s, Scope(tenant="t-a"), dense=QUERY)]
        assert after == [i for i in before if i in set(after)]
        assert len(after) == len(RANK_VECTORS)
    finally:
        s.close()
    with pytest.raises(Unavailable):
        s.count(Scope(tenant="t-a"))


def test_point_ids_pages_in_scope(store: VectorStore) -> None:
    """Consistency-check listing: every id of the scope once, in pages, other tenants unseen."""
    assert store.point_ids(Scope(tenant="t-a")) == ([], "")
    mine = [chunk(f"d{d}", i, four(i)) for d in range(3) for i in range(7)]
    other = [chunk("d0", i, four(i), tenant="t-b") for i in range(4)]
    store.upsert(mine + other, 4)
    seen: list[str] = []
    offset = ""
    pages = 0
    while True:
        ids, offset = store.point_ids(Scope(tenant="t-a"), offset=offset, limit=5)
        assert len(ids) <= 5
        seen += ids
        pages += 1
        if not offset:
            break
    assert pages >= 5
    assert len(seen) == len(set(seen)) == 21
    assert set(seen) == {p.id for p in mine}
    one_doc, _ = store.point_ids(Scope(tenant="t-a", document_ids=("d1",)), limit=100)
    assert set(one_doc) == {p.id for p in mine if p.payload["document_id"] == "d1"}
    assert set(store.point_ids(Scope(tenant="t-b"), limit=100)[0]) == {p.id for p in other}


_KILL_WRITER = """
import os, signal, sys
from pathlib import Path
from docfactory.core.vectorstore import ChunkPoint, point_id
from docfactory.core.vectorstore_edge import EdgeStore
store = EdgeStore(path=Path(sys.argv[1]), collection="chunks_test", flush_interval=3600)
for d in range(5):
    store.upsert([ChunkPoint(id=point_id(f"d{d}", 1, i), dense=[1.0, 0.1 * i, 0.2, 0.3],
                             payload={"tenant": "t-a", "collection": "c1", "document_id": f"d{d}",
                                      "document_version": 1, "classification": 1})
                  for i in range(20)], 4)
store.delete_document("t-a", "d4")
print("written", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close
"""


def test_edge_writes_survive_kill_without_flush(tmp_path: Path) -> None:
    """Writes are flushed to segments only now and then; the WAL replays the rest on load."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _KILL_WRITER, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == -9 and "written" in proc.stdout, proc.stderr
    store = EdgeStore(path=tmp_path, collection=COLL)
    try:
        assert store.count(Scope(tenant="t-a")) == 80
        assert store.count(Scope(tenant="t-a", document_ids=("d4",))) == 0
        ids, _ = store.point_ids(Scope(tenant="t-a"), limit=1000)
        assert set(ids) == {point_id(f"d{d}", 1, i) for d in range(4) for i in range(20)}
    finally:
        store.close()
