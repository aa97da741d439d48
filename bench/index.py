"""``promptrec bench index``: upsert and search_many throughput, latency and recall@K.

Per catalog size and index type: the whole catalog is upserted in batches (items/s), then
``--queries`` user-like queries run through ``search_many`` in micro-batches the size of the
worker's (per-batch latency, queries/s), each with an exclusion set of the items it was built
from, as the recommender does. Recall@K is measured against exact brute-force search in numpy,
tie-aware (a hit counts when its exact score reaches the K-th exact score). Also timed: replacing
one existing item followed by a search (a catalog update on a live index).

Vectors are synthetic but embedding-like: unit vectors around ``n / 100`` cluster centres, and a
query is the normalised mean of 5-20 items from 1-3 clusters (a user's recent history).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import percentiles, print_table, write_json

if TYPE_CHECKING:
    import numpy as np

__all__ = ["add_arguments", "exact_top_k", "make_vectors", "run"]


def _sizes(text: str) -> list[int]:
    values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"want positive sizes, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``promptrec bench index``."""
    p.add_argument("--items", type=_sizes, default=[10_000, 100_000, 1_000_000],
                   help="catalog sizes (default 10000,100000,1000000)")  # fmt: skip
    p.add_argument("--kinds", default="flat,hnsw", help="index types (default flat,hnsw)")
    p.add_argument("--dim", type=int, default=384, help="vector width (default 384, MiniLM)")
    p.add_argument("--k", type=int, default=100, help="K: candidates per query (default 100)")
    p.add_argument("--queries", type=int, default=2000, help="timed queries (default 2000)")
    p.add_argument("--batch", type=int, default=64, help="queries per search_many (default 64)")
    p.add_argument("--recall-queries", type=int, default=256,
                   help="queries checked against exact search (default 256)")  # fmt: skip
    p.add_argument("--upsert-batch", type=int, default=1000, help="items per upsert_many")
    p.add_argument("--use-gpu", choices=["auto", "never"], default="auto",
                   help="flat index on the GPU when FAISS has one (default auto)")  # fmt: skip
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def make_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32 unit vectors around ``max(8, n // 100)`` cluster centres."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 100), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000  # chunked: bounded temporary memory at 1M x 384
    for start in range(0, n, step):
        m = min(step, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * (0.7 / dim**0.5)
        chunk = centres[rng.integers(0, len(centres), m)] + noise
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + m] = chunk
    return out


def _queries(vecs: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, list[list[int]]]:
    """(n, dim) user-like queries and the item rows each was built from (to exclude)."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    queries = np.empty((n, vecs.shape[1]), dtype=np.float32)
    rows = []
    for q in range(n):
        picked = rng.integers(0, len(vecs), rng.integers(5, 21)).tolist()
        mean = vecs[picked].mean(axis=0)
        queries[q] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        rows.append(picked)
    return queries, rows


def exact_top_k(
    vecs: np.ndarray, queries: np.ndarray, k: int, exclude: list[list[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: ((b, k) rows best first, (b,) K-th best score) with excluded rows skipped."""
    import numpy as np

    scores = queries @ vecs.T  # (b, n) float32
    for q, rows in enumerate(exclude):
        scores[q, rows] = -np.inf
    k = min(k, vecs.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    kth = np.take_along_axis(scores, top[:, -1:], axis=1)[:, 0]
    return top, kth


def _recall(
    index: Any, vecs: np.ndarray, queries: np.ndarray, exclude: list[list[int]], k: int
) -> dict[str, float]:
    import numpy as np

    out = {}
    for kk in sorted({10, k}):
        _, kth = exact_top_k(vecs, queries, kk, exclude)
        got = index.search_many(queries, kk, exclude=[{f"i{r}" for r in ex} for ex in exclude])
        hits = 0
        for q, res in enumerate(got):
            rows = np.fromiter((int(i[1:]) for i, _ in res), dtype=np.int64, count=len(res))
            true = vecs[rows] @ queries[q] if len(rows) else np.zeros(0, np.float32)
            hits += int((true >= kth[q] - 1e-5).sum())
        out[f"recall@{kk}"] = hits / (kk * len(queries))
    return out


def _one(kind: str, vecs: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    from promptrec.index import IndexSettings, create_index

    n, dim = vecs.shape
    index = create_index(dim, IndexSettings(kind=kind, use_gpu=args.use_gpu))  # type: ignore[arg-type]
    ids = [f"i{j}" for j in range(n)]
    t0 = time.perf_counter()
    for start in range(0, n, args.upsert_batch):
        index.upsert_many(
            ids[start : start + args.upsert_batch], vecs[start : start + args.upsert_batch]
        )
    queries, rows = _queries(vecs, max(args.queries, args.recall_queries), args.seed)
    exclude = [{f"i{r}" for r in picked} for picked in rows]
    index.search_many(queries[:1], args.k, exclude=exclude[:1])  # first search syncs FAISS
    upsert_s = time.perf_counter() - t0
    lat = []
    t1 = time.perf_counter()
    for start in range(0, args.queries, args.batch):
        s = time.perf_counter()
        index.search_many(
            queries[start : start + args.batch], args.k, exclude=exclude[start : start + args.batch]
        )
        lat.append(1000.0 * (time.perf_counter() - s))
    search_s = time.perf_counter() - t1
    nr = args.recall_queries
    recall = _recall(index, vecs, queries[:nr], rows[:nr], args.k)
    # A live catalog update: replace one indexed item, then the next search.
    s = time.perf_counter()
    index.upsert_many([ids[n // 2]], vecs[[n // 3]])
    index.search_many(queries[:1], args.k, exclude=exclude[:1])
    update_ms = 1000.0 * (time.perf_counter() - s)
    result = {
        "kind": kind,
        "device": index.device,
        "items": n,
        "upsert_s": upsert_s,
        "upsert_items_per_s": n / upsert_s,
        "search_batch": args.batch,
        "k": args.k,
        "search_queries_per_s": args.queries / search_s,
        "search_batch_ms": percentiles(lat),
        "update_then_search_ms": update_ms,
        **recall,
    }
    del index
    gc.collect()
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints a table and writes ``args.out``."""
    import faiss

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    results = []
    for n in args.items:
        vecs = make_vectors(n, args.dim, args.seed)
        for kind in kinds:
            print(f"  {kind} at {n:,} items ...", flush=True)
            results.append(_one(kind, vecs, args))
        del vecs
        gc.collect()
    config: dict[str, Any] = {
        k: v for k, v in vars(args).items() if k not in ("func", "out", "command")
    }
    config["out"] = str(args.out) if args.out else None
    result = {
        "config": config,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "results": results,
    }
    print_table(
        f"index (dim {args.dim}, K={args.k}, {args.batch} queries per search_many, "
        "recall vs exact search)",
        ["kind", "device", "items", "upsert/s", "queries/s", "p50 ms", "p99 ms",
         f"recall@{args.k}", "recall@10", "update+search ms"],
        [[r["kind"], r["device"], r["items"], r["upsert_items_per_s"], r["search_queries_per_s"],
          r["search_batch_ms"]["p50"], r["search_batch_ms"]["p99"], r[f"recall@{args.k}"],
          r["recall@10"], r["update_then_search_ms"]] for r in results],
    )  # fmt: skip
    write_json(args.out, "index", result)
    return result
