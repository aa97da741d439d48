"""``promptrec bench recommend``: the recommender's per-batch path in process, stage by stage.

What the worker's engine thread does for one micro-batch of interactions, without Kafka:
``Recommender.recommend_many`` (user vectors -> one FAISS search with exclusions -> one head
forward -> top-k), on realistic state: ``--items`` indexed items (synthetic embedding-like unit
vectors, :func:`bench.index.make_vectors`), ``--users`` users whose histories hold 1 to
``--history`` items (uniform; the exclusion set is the whole history, the user vector its last
``recent_items``), ``--batch`` queries per call, one FAISS/torch thread (the worker's
``compute_threads``; ``--busy-thread`` adds a pure-Python thread beside it, as the worker's
event loop is, so that wall time includes waiting for the GIL). Reported per configuration:
wall and CPU ms per batch (this thread) and CPU microseconds per event for each stage the
recommender times (``user``, ``search``, ``score``; the recommender's stage clock is switched
to ``time.thread_time``).

Configurations (``--models``):

* ``default``: frozen-encoder space (``--dim``, 384) and the :class:`UserTower`;
* ``checkpoint``: a :class:`RecModel` of the default architecture (64-d; weights from its
  initialisation, which costs the same as trained ones) builds the users, and the index and
  head are 64-d.

The head is ``--head learned`` by default: a few hundred online steps on random pairs, so its
hidden layer is active (a fresh head's second layer is zero). ``--dump FILE`` writes every
answer (ids and scores) and ``--compare FILE`` checks the answers against such a dump: that is
how a change of the math is shown not to change results (``recall``: the share of the
reference's items an answer keeps, for changes such as ``--candidates`` that may).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import percentiles, print_table, write_json

__all__ = ["add_arguments", "run"]

_NEAR = 1e-4  # logits this close are a float-rounding tie


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``promptrec bench recommend``."""
    p.add_argument("--items", type=int, default=10_000, help="indexed items (default 10000)")
    p.add_argument("--users", type=int, default=10_000, help="users with history (default 10000)")
    p.add_argument("--history", type=int, default=50, help="most history items (default 50)")
    p.add_argument("--batch", type=int, default=64, help="queries per call (default 64)")
    p.add_argument("--batches", type=int, default=60, help="timed calls per config (default 60)")
    p.add_argument("--models", default="default,checkpoint", help="default,checkpoint")
    p.add_argument("--dim", type=int, default=384, help="frozen-encoder width (default 384)")
    p.add_argument("--head", choices=["learned", "fresh"], default="learned")
    p.add_argument("--candidates", type=int, default=None,
                   help="FAISS candidates per query (default 100)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="FAISS/torch threads (default 1)")
    p.add_argument("--busy-thread", action="store_true",
                   help="a pure-Python thread runs beside (as the worker's event loop): wall "
                        "time then includes waiting for the GIL")  # fmt: skip
    p.add_argument("--switch-interval-ms", type=float, default=None,
                   help="sys.setswitchinterval for the run (default: Python's 5 ms)")  # fmt: skip
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--dump", type=Path, default=None, help="write every answer to this JSON")
    p.add_argument("--compare", type=Path, default=None, help="check answers against a dump")
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def _engine(model: str, args: argparse.Namespace) -> Any:
    """An engine with a filled index, a (learned) head and, for ``checkpoint``, a RecModel."""
    import numpy as np
    import torch

    from bench.index import make_vectors
    from promptrec.encoder import PromptTemplates, ScoringHead
    from promptrec.encoder.model import ModelConfig, RecModel
    from promptrec.encoder.settings import EncoderSettings
    from promptrec.index import IndexSettings, create_index
    from promptrec.serving.engine import Engine
    from promptrec.serving.settings import ServingSettings

    ids = [f"i{j}" for j in range(args.items)]
    rec_model = None
    dim = args.dim
    if model == "checkpoint":
        torch.manual_seed(args.seed)
        rec_model = RecModel(ModelConfig(text_dim=args.dim), ids[: args.items // 2]).eval()
        dim = rec_model.config.dim
    index = create_index(dim, IndexSettings(kind="flat", use_gpu="never"))
    index.upsert_many(ids, make_vectors(args.items, dim, args.seed))
    head = ScoringHead(dim, seed=args.seed)
    if args.head == "learned":
        rng = np.random.default_rng(args.seed + 1)
        vecs, _ = index.get_many(ids)
        for _ in range(300):
            pick = rng.integers(0, args.items, (2, 32))
            head.learn_many(vecs[pick[0]], vecs[pick[1]], rng.integers(0, 2, 32).astype(np.float32))
    return Engine(
        serving=ServingSettings(
            **({} if args.candidates is None else {"candidates": args.candidates})
        ),
        encoder_settings=EncoderSettings(),
        index_settings=IndexSettings(),
        encoder=None,  # type: ignore[arg-type]  # recommending encodes nothing
        prompts=PromptTemplates.default(),
        index=index,
        profiles=create_index(args.dim, IndexSettings(kind="flat", use_gpu="never")),
        head=head,
        model=rec_model,
    )


def _batches(args: argparse.Namespace) -> list[list[Any]]:
    """``--batches`` lists of ``--batch`` queries over the users' histories (seeded)."""
    import numpy as np

    from promptrec.serving.recommender import Query
    from promptrec.serving.settings import ServingSettings

    s = ServingSettings()
    rng = np.random.default_rng(args.seed + 2)
    lengths = rng.integers(1, args.history + 1, args.users)
    histories = [[f"i{int(j)}" for j in rng.integers(0, args.items, n)] for n in lengths]
    out = []
    for _ in range(args.batches + 1):  # the first one warms up
        users = rng.integers(0, args.users, args.batch)
        out.append(
            [
                Query(f"u{u}", histories[u][-s.recent_items :], frozenset(histories[u]), s.top_k)
                for u in users.tolist()
            ]
        )
    return out


def _measure(model: str, args: argparse.Namespace) -> tuple[dict[str, Any], list[Any]]:
    from promptrec.serving.recommender import Recommender

    engine = _engine(model, args)
    rec = Recommender(engine)
    rec.clock = time.thread_time  # stage timings in CPU time: steadier on a shared machine
    batches = _batches(args)
    stop = threading.Event()
    if args.busy_thread:
        threading.Thread(target=_spin, args=(stop,), daemon=True).start()
    answers: list[Any] = []
    wall, cpu = [], []
    stages: dict[str, list[float]] = {}
    for n, queries in enumerate(batches):
        t, c = time.perf_counter(), time.thread_time()
        result = rec.recommend_many(queries)
        w, p = time.perf_counter() - t, time.thread_time() - c
        answers.extend([[i, float(s)] for i, s in items] for items in result.items)
        if n == 0:
            continue  # warm-up
        wall.append(1000.0 * w)
        cpu.append(1000.0 * p)
        for stage, seconds in result.timings.items():
            stages.setdefault(stage, []).append(1e6 * seconds / len(queries))
    stop.set()
    engine.executor.shutdown()
    row = {
        "model": model,
        "dim": engine.index.dim,
        "batch_ms": percentiles(wall),
        "cpu_ms_p50": percentiles(cpu)["p50"],
        "cpu_ms_min": min(cpu),
        "us_per_event": {k: percentiles(v)["p50"] for k, v in stages.items()},
        "us_per_event_min": {k: min(v) for k, v in stages.items()},
        "cpu_us_per_event": 1000.0 * percentiles(cpu)["p50"] / args.batch,
    }
    return row, answers


def _spin(stop: threading.Event) -> None:
    """Pure-Python work that holds the GIL between switch intervals, like a busy event loop."""
    while not stop.is_set():
        sum(i * i for i in range(2000))


def _compare(got: dict[str, list[Any]], path: Path) -> dict[str, Any]:
    """Answers with identical ids in identical order, the largest score change, and whether
    every answer that differs differs only among near-equal scores (gap < ``_NEAR``)."""
    want = json.loads(path.read_text())
    out: dict[str, Any] = {}
    for model, answers in got.items():
        ref = want.get(model, [])
        same, near, diff, overlap = 0, 0, 0.0, 0.0
        for a, r in zip(answers, ref, strict=False):
            diff = max([diff, *(abs(s - t) for (_, s), (_, t) in zip(a, r, strict=False))])
            overlap += len({i for i, _ in a} & {i for i, _ in r}) / max(1, len(r))
            if [i for i, _ in a] == [i for i, _ in r]:
                same += 1
                continue
            # Where the orders part, the reference's scores there are within _NEAR of the
            # other answer's: a swap of near-ties (float rounding), not a different ranking.
            pairs = enumerate(zip(a, r, strict=False))
            part = next((j for j, (x, y) in pairs if x[0] != y[0]), None)  # None: lengths differ
            if part is not None and abs(a[part][1] - r[part][1]) < _NEAR:
                near += 1
        out[model] = {"answers": len(answers), "identical": same, "near_tie_swaps": near,
                      "max_score_diff": diff,
                      "recall": overlap / max(1, len(answers))}  # fmt: skip
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints tables and writes ``args.out``."""
    import faiss
    import torch

    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows, answers = [], {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        row, answers[model] = _measure(model, args)
        rows.append(row)
    stages = sorted({k for r in rows for k in r["us_per_event"]})
    print_table(
        f"recommend_many: {args.items:,} items, {args.users:,} users, batch {args.batch}, "
        f"{args.threads} thread(s), {args.head} head, busy thread: {args.busy_thread} "
        f"(p50 over {args.batches} batches)",
        ["model", "dim", "wall ms", "wall ms p95", "CPU ms", "CPU ms min", "CPU us/event",
         *stages, *[f"{s} min" for s in stages]],
        [[r["model"], r["dim"], r["batch_ms"]["p50"], r["batch_ms"]["p95"], r["cpu_ms_p50"],
          r["cpu_ms_min"], 1000.0 * r["cpu_ms_p50"] / args.batch,
          *[r["us_per_event"].get(s, 0.0) for s in stages],
          *[r["us_per_event_min"].get(s, 0.0) for s in stages]] for r in rows],
    )  # fmt: skip
    result: dict[str, Any] = {"config": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    if args.dump is not None:
        args.dump.write_text(json.dumps(answers))
    if args.compare is not None:
        result["compare"] = _compare(answers, args.compare)
        print_table(
            f"answers against {args.compare}",
            ["model", "answers", "identical ids", "near-tie swaps", "max |score diff|", "recall"],
            [[m, c["answers"], c["identical"], c["near_tie_swaps"], c["max_score_diff"],
              c["recall"]]
             for m, c in result["compare"].items()],
        )  # fmt: skip
    write_json(args.out, "recommend", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
