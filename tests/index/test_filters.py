"""Attribute filters inside the search: known answers on small hand-built indexes, every backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from promptrec.index import (
    AttributeFilter,
    CandidateIndex,
    IndexSettings,
    create_index,
    restore_index,
)
from promptrec.index.filters import AttributeBitmaps, canonical_value
from promptrec.index.kernels import scan_gathered

# hnsw-graph: the filtered search runs in the HNSW graph with a label bitmap (no exact scan).
KINDS = {
    "flat": IndexSettings(kind="flat", use_gpu="never"),
    "hnsw": IndexSettings(kind="hnsw", use_gpu="never"),
    "hnsw-graph": IndexSettings(kind="hnsw", use_gpu="never", filter_exact_rows=0),
}
CATEGORIES = ["books", "music", "films", "books", "games", "music", "books", "films", "toys", "toys"]  # fmt: skip


@pytest.fixture(params=sorted(KINDS))
def index(request: pytest.FixtureRequest) -> CandidateIndex:
    """Ten items along one axis with falling scores: i0 best for the query ``e0``."""
    ix = create_index(4, KINDS[request.param])
    vecs = np.zeros((10, 4), np.float32)
    vecs[:, 0] = np.linspace(1.0, 0.1, 10)
    vecs[:, 1] = np.arange(10) * 0.01  # distinct vectors
    attrs = [{"category": c, "tags": ["a", f"t{n % 3}"], "year": 2000 + n} for n, c in
             enumerate(CATEGORIES)]  # fmt: skip
    ix.upsert_many([f"i{n}" for n in range(10)], vecs, attributes=attrs)
    return ix


def query() -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)


def hits(ix: CandidateIndex, flt: AttributeFilter | None, k: int = 10) -> list[str]:
    return [i for i, _ in ix.search_many(query(), k, filters=[flt])[0]]


def test_a_filter_leaving_two_items_returns_exactly_those(index: CandidateIndex) -> None:
    assert hits(index, AttributeFilter.build({"category": "toys"})) == ["i8", "i9"]


def test_membership_and_conjunction(index: CandidateIndex) -> None:
    either = AttributeFilter.build({"category": ["music", "games"]})
    assert hits(index, either) == ["i1", "i4", "i5"]
    both = AttributeFilter.build({"category": ["books", "films"], "tags": "t1"})
    assert hits(index, both) == ["i7"]  # i7: films, t1; i1 is music, i4 is games
    assert hits(index, AttributeFilter.build({"year": [2003.0, 2005]})) == ["i3", "i5"]
    assert hits(index, AttributeFilter.build({"year": "2003"})) == []  # "2003" is not 2003
    assert hits(index, AttributeFilter.build({"colour": "red"})) == []


def test_exclusions_and_k(index: CandidateIndex) -> None:
    books = AttributeFilter.build({"category": "books"}, exclude_ids=["i0", "nope"])
    assert hits(index, books) == ["i3", "i6"]
    assert hits(index, AttributeFilter.build(exclude_ids=["i0", "i1"]), k=3) == ["i2", "i3", "i4"]
    assert hits(index, AttributeFilter.build({"category": "books"}), k=2) == ["i0", "i3"]


def test_filters_are_per_query_and_combine_with_exclude(index: CandidateIndex) -> None:
    q = np.repeat(query(), 3, axis=0)
    toys = AttributeFilter.build({"category": "toys"})
    out = index.search_many(q, 3, exclude=[set(), {"i8"}, {"i0"}], filters=[toys, toys, None])
    assert [[i for i, _ in row] for row in out] == [["i8", "i9"], ["i9"], ["i1", "i2", "i3"]]
    scores, rows = index.search_rows(q, 3, filters=[toys, None, toys])
    assert rows[0].tolist()[2] == -1 and scores[0, 2] == -np.inf
    assert (rows[1] >= 0).all()


def test_deleted_items_never_appear(index: CandidateIndex) -> None:
    index.remove_many(["i8", "i0"])  # i9 moves into a freed row
    assert hits(index, AttributeFilter.build({"category": "toys"})) == ["i9"]
    assert hits(index, AttributeFilter.build({"category": "books"})) == ["i3", "i6"]
    assert not index.matches("i8", None)


def test_upsert_that_changes_a_category_moves_the_item(index: CandidateIndex) -> None:
    index.upsert_many(["i0"], np.array([[1.0, 0.0, 0.0, 0.0]], np.float32),
                      attributes=[{"category": "toys"}])  # fmt: skip
    assert hits(index, AttributeFilter.build({"category": "toys"})) == ["i0", "i8", "i9"]
    assert "i0" not in hits(index, AttributeFilter.build({"category": "books"}))
    index.set_attributes_many(["i9", "ghost"], [{"category": "books"}, {"category": "toys"}])
    assert hits(index, AttributeFilter.build({"category": "toys"})) == ["i0", "i8"]
    assert hits(index, AttributeFilter.build({"category": "books"})) == ["i3", "i6", "i9"]
    index.upsert_many(["i3"], np.ones((1, 4), np.float32))  # no attributes given: kept
    assert index.attributes_of("i3")["category"] == ["books"]


def test_snapshot_keeps_attributes(index: CandidateIndex, tmp_path: Path) -> None:
    index.snapshot(tmp_path / "snap")
    back = restore_index(tmp_path / "snap", index.settings)
    toys = AttributeFilter.build({"category": "toys"})
    assert hits(back, toys) == hits(index, toys) == ["i8", "i9"]
    assert back.attributes_of("i2") == index.attributes_of("i2")


def test_matches_is_the_search_rule(index: CandidateIndex) -> None:
    flt = AttributeFilter.build({"tags": ["t2"]}, exclude_ids=["i5"])
    passing = [i for i in index.ids() if index.matches(i, flt)]
    assert sorted(passing) == sorted(hits(index, flt)) == ["i2", "i8"]


def test_bad_filter_values_are_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        AttributeFilter.build({"category": []})
    with pytest.raises(ValueError, match="not finite"):
        AttributeFilter.build({"price": float("nan")})
    with pytest.raises(ValueError, match="strings, numbers or bools"):
        AttributeFilter.build({"category": [{"nested": 1}]})  # type: ignore[list-item]
    assert canonical_value(True) != canonical_value(1)
    assert canonical_value(2.0) == canonical_value(2)


def test_only_configured_keys_are_filterable() -> None:
    ix = create_index(2, IndexSettings(use_gpu="never", filter_attributes="category, brand"))
    ix.upsert_many(
        ["a"], np.ones((1, 2), np.float32), attributes=[{"category": "x", "tags": ["y"]}]
    )
    assert ix.attributes_of("a") == {"category": ["x"]}
    assert ix.settings.filter_key_set == frozenset({"category", "brand"})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_random_filters_match_brute_force_under_churn(kind: str) -> None:
    rng = np.random.default_rng(7)
    ix = create_index(8, KINDS[kind])
    ref: dict[str, tuple[np.ndarray, str]] = {}
    colours = ["red", "green", "blue", "black"]
    for step in range(30):
        ids = [f"x{int(i)}" for i in rng.integers(0, 300, size=40)]
        vecs = rng.standard_normal((40, 8)).astype(np.float32)
        cols = [colours[int(c)] for c in rng.integers(0, 4, size=40)]
        ix.upsert_many(ids, vecs, attributes=[{"colour": c} for c in cols])
        ref.update({i: (v, c) for i, v, c in zip(ids, vecs, cols, strict=True)})
        if step % 3 == 0:
            gone = [f"x{int(i)}" for i in rng.integers(0, 300, size=25)]
            ix.remove_many(gone)
            for g in gone:
                ref.pop(g, None)
        want = colours[step % 4]
        flt = AttributeFilter.build({"colour": want})
        q = rng.standard_normal((3, 8)).astype(np.float32)
        keys = sorted(i for i, (_, c) in ref.items() if c == want)
        mat = np.stack([ref[i][0] for i in keys])
        for row, got in zip(q, ix.search_many(q, 5, filters=[flt] * 3), strict=True):
            best = [keys[j] for j in np.argsort(-(mat @ row))[:5]]
            if kind == "hnsw-graph":  # approximate: the graph may miss a few, never a wrong one
                assert {i for i, _ in got} <= set(keys) and len(got) == min(5, len(keys))
            else:
                assert [i for i, _ in got] == best


def test_bitmaps_switch_between_sparse_and_dense() -> None:
    bitmaps = AttributeBitmaps()
    bitmaps.grow(1000)
    for row in range(200):
        bitmaps.append_row()
        bitmaps.set_row(row, {"k": "common" if row % 2 else f"rare{row}"})
    common = AttributeFilter.build({"k": "common"})
    mask = bitmaps.allowed(common, 200)
    assert mask.sum() == 100 and mask[1::2].all()
    assert bitmaps._postings[("k", ("s", "common"))].bits is not None  # 100 >= 1000 / 64
    assert bitmaps._postings[("k", ("s", "rare0"))].bits is None
    for row in range(1, 200, 2):
        bitmaps.set_row(row, {"k": "other"})
    assert (
        not bitmaps.allowed(common, 200).any() and ("k", ("s", "common")) not in bitmaps._postings
    )
    assert bitmaps.allowed(AttributeFilter.build({"k": "rare4"}), 200).nonzero()[0].tolist() == [4]


def test_gathered_scan_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((300, 8)).astype(np.float32)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    for share in (0.03, 0.5, 1.0):
        allowed = rng.random(300) < share
        scores = q @ vecs.T
        scores[:, ~allowed] = -np.inf
        want = np.argsort(-scores, axis=1)[:, :5]
        for chunk in (7, 1000):  # many chunks merged, and one
            got_scores, rows = scan_gathered(q, vecs, 5, allowed, chunk=chunk)
            assert rows.tolist() == want.tolist()
            assert np.allclose(got_scores, np.take_along_axis(scores, want, axis=1))
    _, rows = scan_gathered(q, vecs, 5, np.arange(300) < 2, chunk=64)
    assert rows.shape == (4, 2)  # fewer allowed rows than k
    assert all(sorted(r) == [0, 1] for r in rows.tolist())
    assert scan_gathered(q, vecs, 5, np.zeros(300, bool))[1].shape == (4, 0)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_selective_filter_on_a_larger_index(kind: str) -> None:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((2000, 8)).astype(np.float32)
    rare = set(rng.choice(2000, 40, replace=False).tolist())  # 2%: a short gathered scan
    ix = create_index(8, KINDS[kind])
    ix.upsert_many([f"x{j}" for j in range(2000)], vecs,
                   attributes=[{"tier": "gold" if j in rare else "basic"} for j in range(2000)])  # fmt: skip
    q = rng.standard_normal((3, 8)).astype(np.float32)
    keys = sorted(rare)
    got = ix.search_many(q, 10, filters=[AttributeFilter.build({"tier": "gold"})] * 3)
    for row, hits in zip(q, got, strict=True):
        best = [f"x{keys[j]}" for j in np.argsort(-(vecs[keys] @ row))[:10]]
        if kind == "hnsw-graph":
            assert {i for i, _ in hits} <= {f"x{j}" for j in rare} and len(hits) == 10
        else:
            assert [i for i, _ in hits] == best


def test_a_snapshot_with_broken_attributes_is_refused(
    index: CandidateIndex, tmp_path: Path
) -> None:
    from promptrec.index import SnapshotError

    index.snapshot(tmp_path / "snap")
    meta_path = tmp_path / "snap" / "meta.json"
    meta = json.loads(meta_path.read_text())
    for broken in (meta["attributes"][:3], "category", [["books"]] * len(meta["ids"])):
        meta_path.write_text(json.dumps({**meta, "attributes": broken}))
        with pytest.raises(SnapshotError, match="attributes do not match"):
            restore_index(tmp_path / "snap", index.settings)


def test_garbage_attributes_are_skipped_or_refused(index: CandidateIndex) -> None:
    one = np.ones((1, 4), np.float32)
    index.upsert_many(
        ["odd"], one, attributes=[{"a": {"x": 1}, "b": None, "c": float("nan"), "d": [1, [2]]}]
    )
    assert index.attributes_of("odd") == {"d": [1]}  # nothing a filter could name is kept
    with pytest.raises(ValueError, match="2 attribute mappings for 1 ids"):
        index.upsert_many(["x"], one, attributes=[{}, {}])
    with pytest.raises(ValueError, match="1 attribute mappings for 2 ids"):
        index.set_attributes_many(["i0", "i1"], [{}])
    assert "x" not in index and index.attributes_of("i0")["category"] == ["books"]
    with pytest.raises(ValueError, match="filters for"):
        index.search_rows(query(), 3, filters=[None, None])
