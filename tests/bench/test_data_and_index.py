"""Benchmark building blocks: generated data, exact search, and the index benchmark (tiny)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from bench.common import cpu_seconds, percentiles, rss_bytes
from bench.data import BenchData
from bench.index import exact_top_k, make_vectors
from bench.index import run as run_index
from bench.pipeline import parse_rates


def test_generated_data_is_deterministic_and_realistic() -> None:
    data = BenchData(50, 30, seed=5)
    items = list(data.items())
    assert items == list(BenchData(50, 30, seed=5).items())
    assert data.item(17) == items[17]
    assert len({i["item_id"] for i in items}) == 50
    # A product listing, not a one-word stub: title + a sentence or two of description.
    lengths = [len(i["title"]) + len(i["text"]) for i in items]
    assert min(lengths) >= 50 and np.mean(lengths) >= 80
    events = list(data.interactions(80))
    assert {u for u, _, _ in events[:30]} == {u["user_id"] for u in data.users()}
    assert all(i in {it["item_id"] for it in items} for _, i, _ in events)


def test_exact_top_k_skips_excluded_rows() -> None:
    vecs = np.eye(4, dtype=np.float32)
    q = np.array([[1.0, 0.5, 0.2, 0.0]], dtype=np.float32)
    top, kth = exact_top_k(vecs, q, 2, [[0]])
    assert top.tolist() == [[1, 2]] and kth[0] == pytest.approx(0.2)


def test_percentiles_and_proc_probes() -> None:
    p = percentiles(list(range(1, 101)))
    assert p["n"] == 100 and p["max"] == 100 and 50 <= p["p50"] <= 51 and p["p99"] >= 99
    assert percentiles([])["n"] == 0
    import os

    assert cpu_seconds(os.getpid()) > 0
    rss, peak = rss_bytes(os.getpid())
    assert 0 < rss <= peak


def test_parse_rates() -> None:
    assert parse_rates("MAX,1000") == [0.0, 1000.0]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rates("-5")


def test_index_bench_tiny(tmp_path: Path) -> None:
    out = tmp_path / "index.json"
    args = argparse.Namespace(
        items=[400],
        kinds="flat,hnsw",
        dim=32,
        k=20,
        queries=64,
        batch=16,
        recall_queries=32,
        upsert_batch=100,
        use_gpu="never",
        seed=3,
        out=out,
    )
    run_index(args)
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "index" and doc["machine"]["cpu_count"] >= 1
    by_kind = {r["kind"]: r for r in doc["results"]}
    assert set(by_kind) == {"flat", "hnsw"}
    assert by_kind["flat"]["recall@20"] == 1.0 and by_kind["flat"]["recall@10"] == 1.0
    assert by_kind["hnsw"]["recall@20"] >= 0.8
    for r in doc["results"]:
        assert r["items"] == 400
        assert r["upsert_items_per_s"] == pytest.approx(r["items"] / r["upsert_s"])
        assert r["search_batch_ms"]["n"] == 4 and r["search_queries_per_s"] > 0
        assert r["update_then_search_ms"] > 0


def test_vectors_are_unit_length() -> None:
    v = make_vectors(300, 16, 1)
    assert v.shape == (300, 16) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
