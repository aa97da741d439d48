"""``promptrec bench state``: bytes of worker state per user and per indexed item.

The figures behind the README's capacity plan. A user's history is measured at its cap
(``--history-len`` interactions, twice that many remembered event ids and positions, and as many
learned feedback ids), serialised as the changelog stores it. An indexed item is measured as the
RSS growth of the process while ``--items`` random unit vectors of ``--dim`` are upserted into
each index kind, and as the size of its snapshot on disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import print_table, write_json

__all__ = ["add_arguments", "history_bytes", "run"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a whole number >= 1, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``promptrec bench state``."""
    p.add_argument("--history-len", type=_positive, default=50, help="PROMPTREC_HISTORY_LEN")
    p.add_argument("--items", type=_positive, default=100_000, help="items per index kind")
    p.add_argument("--dim", type=_positive, default=384, help="vector width (384 = MiniLM)")
    p.add_argument("--kinds", default="flat,hnsw", help="index kinds (flat,hnsw)")
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def history_bytes(history_len: int) -> int:
    """Changelog bytes of one user history at its cap (uuid event ids, ``p:offset`` positions)."""
    from promptrec.serving.history import UserHistory

    h = UserHistory()
    for n in range(4 * history_len):  # past the cap: every bounded list is full
        h.append(uuid.uuid4().hex, f"item-{n:07d}", 1767225600000 + n, history_len, f"7:{n}")
    for n in range(4 * history_len):
        h.add_feedback(uuid.uuid4().hex, f"7:{10**6 + n}", history_len)
    return len(json.dumps(h.to_value(), separators=(",", ":")).encode())


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _index_bytes(kind: str, n: int, dim: int) -> dict[str, Any]:
    import numpy as np

    from promptrec.index import IndexSettings, create_index

    rng = np.random.default_rng(0)
    before = _rss_kb()
    index = create_index(dim, IndexSettings(kind=kind, use_gpu="never"))
    step = 10_000
    for start in range(0, n, step):
        vecs = rng.standard_normal((min(step, n - start), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        index.upsert_many([f"item-{i:08d}" for i in range(start, start + len(vecs))], vecs)
    grown = (_rss_kb() - before) * 1024
    with tempfile.TemporaryDirectory() as tmp:
        index.snapshot(Path(tmp) / "index")
        disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return {
        "kind": kind,
        "items": n,
        "dim": dim,
        "rss_bytes_per_item": grown / n,
        "snapshot_bytes_per_item": disk / n,
        "vector_bytes": 4 * dim,
    }


def run(args: argparse.Namespace) -> None:
    """Measure, print a table and write JSON."""
    hist = history_bytes(args.history_len)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    rows = [_index_bytes(kind, args.items, args.dim) for kind in kinds]
    print_table(
        "worker state",
        ["what", "bytes"],
        [[f"user history at cap ({args.history_len})", hist]]
        + [[f"{r['kind']} index item, RSS ({args.dim}-d)", r["rss_bytes_per_item"]] for r in rows]
        + [[f"{r['kind']} index item, snapshot", r["snapshot_bytes_per_item"]] for r in rows],
    )
    write_json(
        args.out,
        "state",
        {"history_len": args.history_len, "history_bytes": hist, "index": rows},
    )
