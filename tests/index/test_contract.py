"""Known-answer contract every index backend must pass (implicit-style: one adapter per backend)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from promptrec.index import (
    CandidateIndex,
    DimensionMismatch,
    IndexSettings,
    SnapshotError,
    create_index,
    faiss_gpu_count,
    restore_index,
)
from tests.index.helpers import churn_against_brute_force

KINDS = ["flat", "hnsw"]


def make(kind: str, dim: int = 8) -> CandidateIndex:
    return create_index(dim, IndexSettings(kind=kind, use_gpu="never"))


def basis(dim: int = 8) -> np.ndarray:
    return np.eye(dim, dtype=np.float32)


@pytest.fixture(params=KINDS)
def index(request: pytest.FixtureRequest) -> CandidateIndex:
    ix = make(request.param)
    # item i points along axis i, with a growing component on axis 7 so scores are distinct.
    vecs = basis()[:6] + np.arange(6, dtype=np.float32)[:, None] * 0.1 * basis()[7]
    ix.upsert_many([f"i{n}" for n in range(6)], vecs, [f"v{n}" for n in range(6)])
    return ix


def test_known_top_k(index: CandidateIndex) -> None:
    q = basis()[[2, 7]]
    res = index.search_many(q, 3)
    assert res[0][0][0] == "i2" and res[0][0][1] == pytest.approx(1.0)
    # Along axis 7 the order is by the 0.1 * n component: i5, i4, i3.
    assert [i for i, _ in res[1]] == ["i5", "i4", "i3"]
    assert [s for _, s in res[1]] == pytest.approx([0.5, 0.4, 0.3])


def test_exclusion_is_per_query(index: CandidateIndex) -> None:
    q = basis()[[7, 7]]
    res = index.search_many(q, 2, exclude=[{"i5", "i4"}, set()])
    assert [i for i, _ in res[0]] == ["i3", "i2"]
    assert [i for i, _ in res[1]] == ["i5", "i4"]


def test_upsert_replaces_and_remove_forgets(index: CandidateIndex) -> None:
    index.upsert_many(["i0"], basis()[[7]] * 0.9, ["v0b"])
    assert index.search_many(basis()[[7]], 1)[0][0] == ("i0", pytest.approx(0.9))
    assert index.tag_of("i0") == "v0b" and len(index) == 6
    assert index.remove_many(["i0", "missing"]) == 1
    assert "i0" not in index and len(index) == 5
    assert all(i != "i0" for i, _ in index.search_many(basis()[[7]], 10)[0])
    index.upsert_many(["new"], basis()[[6]])
    assert index.search_many(basis()[[6]], 1)[0][0][0] == "new"


def test_get_many_mask_and_ids(index: CandidateIndex) -> None:
    vecs, found = index.get_many(["i1", "nope"])
    assert found.tolist() == [True, False]
    assert vecs[0][1] == pytest.approx(1.0) and not vecs[1].any()
    assert sorted(index.ids()) == [f"i{n}" for n in range(6)]


def test_search_rows_arrays_agree_with_search_many(index: CandidateIndex) -> None:
    q = basis()[[7, 2]]
    exclude = [{"i5"}, {"i0", "i1", "i2", "i3", "i4"}]
    scores, rows = index.search_rows(q, 3, exclude=exclude)
    assert scores.shape == rows.shape == (2, 3)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    assert index.ids_at(rows[0].tolist()) == ["i4", "i3", "i2"]
    assert scores[0].tolist() == pytest.approx([0.4, 0.3, 0.2])
    # Only i5 is left for the second query: the other slots are -1 / -inf.
    assert rows[1, 0] >= 0 and index.ids_at([int(rows[1, 0])]) == ["i5"]
    assert rows[1, 1:].tolist() == [-1, -1] and np.isneginf(scores[1, 1:]).all()
    expected = [
        [(i, pytest.approx(s)) for i, s in hits] for hits in index.search_many(q, 3, exclude)
    ]
    got = [
        [(index.ids_at([r])[0], s) for r, s in zip(rr, ss, strict=True) if r >= 0]
        for rr, ss in zip(rows.tolist(), scores.tolist(), strict=True)
    ]
    assert got == expected
    # Rows address the stored vectors; row -1 gives some row, masked by the caller.
    np.testing.assert_array_equal(
        index.vectors_at(rows[:1]), index.get_many(index.ids_at(rows[0].tolist()))[0][None]
    )
    assert index.vectors_at(rows).shape == (2, 3, 8)
    assert index.rows_of(["i4", "nope"]).tolist()[1] == -1


def test_equal_scores_are_ordered_by_id(index: CandidateIndex) -> None:
    # Same vector under three ids, inserted out of id order: the cut and the order go by id.
    twin = basis()[[6]] * 2.0
    index.upsert_many(["t2", "t0", "t1"], np.repeat(twin, 3, axis=0))
    assert [i for i, _ in index.search_many(basis()[[6]], 2)[0]] == ["t0", "t1"]
    _, rows = index.search_rows(basis()[[6]], 3, exclude=[{"t0"}])
    assert index.ids_at(rows[0, :2].tolist()) == ["t1", "t2"]


def test_small_and_empty(index: CandidateIndex) -> None:
    assert len(index.search_many(basis()[[7]], 100)[0]) == 6
    assert index.search_many(np.zeros((0, 8), np.float32), 3) == []
    empty = make(index.kind)
    assert empty.search_many(basis()[[0, 1]], 3) == [[], []]


def test_bad_input_is_rejected_without_change(index: CandidateIndex) -> None:
    with pytest.raises(DimensionMismatch):
        index.upsert_many(["x"], np.ones((1, 3), np.float32))
    with pytest.raises(DimensionMismatch):
        index.search_many(np.ones((1, 3), np.float32), 1)
    bad = np.ones((1, 8), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        index.upsert_many(["x"], bad)
    with pytest.raises(ValueError):
        index.upsert_many(["x", "y"], np.ones((1, 8), np.float32))
    assert len(index) == 6 and "x" not in index


def test_snapshot_round_trip(index: CandidateIndex, tmp_path: Path) -> None:
    index.remove_many(["i3"])
    index.snapshot(tmp_path / "snap")
    back = restore_index(tmp_path / "snap")
    assert back.kind == index.kind and len(back) == 5
    assert back.tag_of("i4") == "v4"
    q = basis()[[7, 1]]
    assert back.search_many(q, 4) == index.search_many(q, 4)


def test_corrupt_snapshot_is_refused(index: CandidateIndex, tmp_path: Path) -> None:
    path = tmp_path / "snap"
    index.snapshot(path)
    meta = json.loads((path / "meta.json").read_text())
    meta["ids"] = meta["ids"][:-1]
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotError):
        restore_index(path)
    (path / "vectors.npy").write_bytes(b"\x80\x04pickle")
    with pytest.raises(SnapshotError):
        restore_index(path)
    with pytest.raises(SnapshotError):
        restore_index(tmp_path / "missing")


def test_flat_matches_brute_force_under_churn() -> None:
    churn_against_brute_force(
        make("flat", 16), seed=0, steps=30, ids=80, batch=8, every=3, drop=4, queries=3
    )


def test_hnsw_recall_against_flat() -> None:
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [str(i) for i in range(2000)]
    flat, hnsw = make("flat", 32), make("hnsw", 32)
    flat.upsert_many(ids, vecs)
    hnsw.upsert_many(ids, vecs)
    q = vecs[:100] + 0.1 * rng.standard_normal((100, 32)).astype(np.float32)
    exact = flat.search_many(q, 10)
    approx = hnsw.search_many(q, 10)
    hits = sum(
        len({i for i, _ in a} & {i for i, _ in e}) for a, e in zip(approx, exact, strict=True)
    )
    assert hits / 1000 >= 0.9


def test_gpu_count_matches_the_faiss_build() -> None:
    # A CPU-only FAISS build (faiss-cpu, as in CI) has no GPU support at all: the count must
    # be 0 there, and equal FAISS's own count on a GPU build.
    get = getattr(faiss, "get_num_gpus", None)
    expected = int(get()) if get is not None else 0
    assert faiss_gpu_count() == expected
    if not hasattr(faiss, "StandardGpuResources"):
        assert faiss_gpu_count() == 0
