"""Live catalog updates: replaced/removed items leave tombstones, not rebuilds; results stay exact."""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.index import CandidateIndex, IndexSettings, create_index
from tests.index.helpers import churn_against_brute_force


def make(kind: str, dim: int = 16) -> CandidateIndex:
    return create_index(dim, IndexSettings(kind=kind, use_gpu="never"))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_churn_matches_brute_force(kind: str) -> None:
    ix = make(kind)
    # Small index, large ef: HNSW is exact here too, so both must match brute force.
    ref = churn_against_brute_force(
        ix, seed=4, steps=40, ids=60, batch=6, every=4, drop=3, queries=2
    )
    assert len(ix) == len(ref)


def test_replacing_an_item_does_not_rebuild_faiss() -> None:
    ix = make("hnsw", 8)
    vecs = np.eye(8, dtype=np.float32)
    ix.upsert_many([f"i{n}" for n in range(8)], vecs)
    ix.search_many(vecs[:1], 1)
    backend = ix._index  # type: ignore[attr-defined]
    ix.upsert_many(["i0"], vecs[[3]])  # i0 now points where i3 does
    ix.remove_many(["i5"])
    res = ix.search_many(vecs[[3, 5, 0]], 2)
    assert ix._index is backend  # type: ignore[attr-defined]  # same graph, tombstones only
    assert {i for i, _ in res[0]} == {"i0", "i3"}
    assert all(i != "i5" for i, _ in res[1])
    assert all(i != "i0" or s < 0.5 for i, s in res[2])


def test_many_tombstones_trigger_one_compaction() -> None:
    ix = make("hnsw", 4)
    rng = np.random.default_rng(0)
    ix.upsert_many(["a", "b"], rng.standard_normal((2, 4)).astype(np.float32))
    for _ in range(1500):  # each replacement leaves a dead label behind
        ix.upsert_many(["a"], rng.standard_normal((1, 4)).astype(np.float32))
    ix.search_many(rng.standard_normal((1, 4)).astype(np.float32), 2)
    assert ix._dead == 0 and ix._ntotal == 2  # type: ignore[attr-defined]
    assert sorted(i for i, _ in ix.search_many(np.ones((1, 4), np.float32), 5)[0]) == ["a", "b"]
