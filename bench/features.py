"""Issue 15 costs: attribute filters in the search, explanations, and memory per extra arm index.

``python -m bench.features`` (one FAISS/torch thread, like the worker's per-event path):

* filter: ``search_rows`` of ``--batch`` queries, K = ``--k``, unfiltered vs filtered (one shared
  filter of each selectivity, and an ``exclude_item_ids``-only filter), per index kind;
* explain: ``Recommender.recommend_many`` of ``--batch`` users with ``explain`` off vs on;
* memory: bytes of one more index of ``--items`` vectors with tags and attributes (what an extra
  (item template, checkpoint) arm costs; tracemalloc plus FAISS's HNSW arrays), against
  ``extra_index_bytes``.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import percentiles, print_table, write_json
from bench.index import make_vectors

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the features benchmark."""
    p.add_argument("--items", type=int, default=50_000, help="catalog size (default 50000)")
    p.add_argument("--dim", type=int, default=384, help="vector width (default 384)")
    p.add_argument("--k", type=int, default=100, help="candidates per query (default 100)")
    p.add_argument("--batch", type=int, default=64, help="queries per call (default 64)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per case (default 20)")
    p.add_argument("--kinds", default="flat,hnsw", help="index kinds (default flat,hnsw)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def _timed(fn: Any, repeats: int) -> dict[str, Any]:
    """Wall and process-CPU ms per call; CPU time is the steadier figure on a shared machine."""
    fn()  # warm-up (FAISS sync, allocations)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(1000.0 * (time.perf_counter() - t))
        cpu.append(1000.0 * (time.process_time() - c))
    return {**percentiles(wall), "cpu_p50": percentiles(cpu)["p50"]}


def _attributes(n: int, seed: int) -> list[dict[str, object]]:
    """category: 50% / 10% / 1% / 0.1% buckets; brand: 1000 values (high cardinality)."""
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    cats = np.select([u < 0.5, u < 0.6, u < 0.61, u < 0.611], ["c50", "c10", "c1", "c01"], "rest")
    return [{"category": str(c), "brand": f"b{int(b)}"} for c, b in
            zip(cats, rng.integers(0, 1000, n), strict=True)]  # fmt: skip


def _filters(
    args: argparse.Namespace, vecs: np.ndarray, attrs: list[dict[str, object]]
) -> list[Any]:
    from promptrec.index import AttributeFilter, IndexSettings, create_index

    n = len(vecs)
    queries = make_vectors(args.batch, args.dim, args.seed + 7)
    cases = {
        "none": None,
        "50%": AttributeFilter.build({"category": "c50"}),
        "10%": AttributeFilter.build({"category": "c10"}),
        "1%": AttributeFilter.build({"category": "c1"}),
        "0.1%": AttributeFilter.build({"category": "c01"}),
        "exclude 100 ids": AttributeFilter.build(exclude_ids=[f"i{j}" for j in range(100)]),
    }
    rows = []
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        index = create_index(args.dim, IndexSettings(kind=kind, use_gpu="never"))  # type: ignore[arg-type]
        ids = [f"i{j}" for j in range(n)]
        for s in range(0, n, 5000):
            index.upsert_many(ids[s : s + 5000], vecs[s : s + 5000], attributes=attrs[s : s + 5000])
        for name, flt in cases.items():
            filters = None if flt is None else [flt] * args.batch
            ms = _timed(
                lambda f=filters, ix=index: ix.search_rows(queries, args.k, filters=f), args.repeats
            )
            rows.append({"kind": kind, "filter": name, "batch_ms": ms})
        rows.append({"kind": kind, "filter": "bitmap bytes", "bytes": index._attrs.nbytes()})
        del index
        gc.collect()
    return rows


def _explain(args: argparse.Namespace, vecs: np.ndarray) -> dict[str, Any]:
    from promptrec.encoder import PromptTemplates, ScoringHead
    from promptrec.encoder.settings import EncoderSettings
    from promptrec.index import IndexSettings, create_index
    from promptrec.serving.engine import Engine
    from promptrec.serving.recommender import Query, Recommender
    from promptrec.serving.settings import ServingSettings

    index = create_index(args.dim, IndexSettings(kind="flat", use_gpu="never"))
    ids = [f"i{j}" for j in range(len(vecs))]
    index.upsert_many(ids, vecs)
    engine = Engine(
        serving=ServingSettings(candidates=args.k),
        encoder_settings=EncoderSettings(),
        index_settings=IndexSettings(),
        encoder=None,  # type: ignore[arg-type]  # recommending encodes nothing
        prompts=PromptTemplates.default(),
        index=index,
        profiles=create_index(args.dim, IndexSettings(kind="flat", use_gpu="never")),
        head=ScoringHead(args.dim),
    )
    rng = np.random.default_rng(args.seed)
    recents = [[ids[int(j)] for j in rng.integers(0, len(ids), 20)] for _ in range(args.batch)]
    rec = Recommender(engine)
    out = {}
    for explain in (False, True):
        queries = [
            Query(f"u{q}", r, frozenset(r), 10, explain=explain) for q, r in enumerate(recents)
        ]
        out["on" if explain else "off"] = _timed(
            lambda q=queries: rec.recommend_many(q), args.repeats
        )
    engine.executor.shutdown()
    return out


def _memory(
    args: argparse.Namespace, vecs: np.ndarray, attrs: list[dict[str, object]]
) -> list[Any]:
    """Bytes of one more index: numpy + Python (tracemalloc) plus FAISS's own HNSW arrays."""
    import tracemalloc

    from promptrec.index import IndexSettings, create_index
    from promptrec.serving.experiments import extra_index_bytes

    out = []
    n = len(vecs)
    ids = [f"i{j}" for j in range(n)]
    tags = [f"{j:024x}" for j in range(n)]  # the catalog's 24-hex content tags
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        index: Any = create_index(args.dim, IndexSettings(kind=kind, use_gpu="never"))  # type: ignore[arg-type]
        for s in range(0, n, 5000):
            part = slice(s, s + 5000)
            index.upsert_many(ids[part], vecs[part], tags[part], attrs[part])
        index.search_rows(vecs[:1], 10)
        traced = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        native = 0  # FAISS allocations are invisible to tracemalloc: count HNSW's arrays
        if kind == "hnsw":
            h = index._index.hnsw
            native = index._index.ntotal * args.dim * 4 + h.neighbors.size() * 4
            native += h.offsets.size() * 8 + h.levels.size() * 4
        total = traced + native
        out.append({"kind": kind, "items": n, "bytes": total, "python_numpy_bytes": traced,
                    "faiss_bytes": native, "bytes_per_item": total / n,
                    "bitmap_bytes": index._attrs.nbytes(),
                    "estimate_bytes": extra_index_bytes(n, args.dim, kind)})  # fmt: skip
        del index
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints tables and writes ``args.out``."""
    import faiss
    import torch

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    try:  # numpy's own BLAS (the dense filter scan, explanations) on one thread as well
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    vecs = make_vectors(args.items, args.dim, args.seed)
    attrs = _attributes(args.items, args.seed)
    memory = _memory(args, vecs, attrs)
    filters = _filters(args, vecs, attrs)
    explain = _explain(args, vecs)
    result = {"config": {k: str(v) for k, v in vars(args).items()}, "filter": filters,
              "explain": explain, "memory": memory}  # fmt: skip
    print_table(
        f"search_rows, {args.batch} queries, K={args.k}, {args.items:,} x {args.dim} (ms per call)",
        ["kind", "filter", "wall p50", "wall p95", "CPU p50"],
        [[r["kind"], r["filter"], r["batch_ms"]["p50"], r["batch_ms"]["p95"],
          r["batch_ms"]["cpu_p50"]] for r in filters if "batch_ms" in r],
    )  # fmt: skip
    print_table(
        f"recommend_many, {args.batch} users, k=10, 20 history items (ms per call)",
        ["explain", "wall p50", "wall p95", "CPU p50"],
        [[key, v["p50"], v["p95"], v["cpu_p50"]] for key, v in explain.items()],
    )
    print_table(
        "memory of one more index (with tags and 2 attributes)",
        ["kind", "items", "MB", "estimate MB", "bytes/item", "bitmaps MB"],
        [[m["kind"], m["items"], m["bytes"] / 1e6, m["estimate_bytes"] / 1e6,
          m["bytes_per_item"], m["bitmap_bytes"] / 1e6] for m in memory],
    )  # fmt: skip
    write_json(args.out, "features", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
