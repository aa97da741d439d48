"""promptrec's side of the peer comparison: our split out, our evaluator in, one results.json.

Runs in the project venv (``.venv``), next to ``run_recbole.py``, which runs RecBole in
``.peers-venv`` (numpy<2). The two meet only through files and one pipe:

``export``
    Splits the data with promptrec's own loader and :class:`Split` and writes, under
    ``--workdir``, a RecBole atomic data set that holds the TRAINING interactions only
    (``atomic/peers/peers.inter``; the timestamp is the position in our time order, so
    RecBole's sort reproduces our order exactly, ties included), every catalog item
    (``peers.item``, so items seen only as a validation/test target still get an id) and
    ``split.json`` (per user row: training items, validation and test target; catalog rows).
``serve``
    A line protocol on stdin/stdout that ``run_recbole.py`` keeps open while it trains: each
    request names a ``(n_users, n_items)`` float32 ``.npy`` score matrix (rows = our user rows,
    columns = our catalog rows) and a stage; the reply is promptrec's metrics of it
    (:class:`MatrixScorer` through :func:`stage_ranks`: our history exclusions, tie rule and
    metric code) and, on request, the per-user ranks written as ``.npy``. A bad request gets an
    ``error`` reply and the server keeps going.
``report``
    Builds ``bench/peers/results.json``: every peer's test ranks (from its validation-chosen grid
    point), promptrec's ranks from a checkpoint and our Pop, all through
    :func:`uncertainty_report` (bootstrap intervals, paired test promptrec - peer).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.evaluation.datasets import load_dataset
from promptrec.evaluation.protocol import (
    PROTOCOL,
    MatrixScorer,
    Split,
    metrics_from_ranks,
    stage_ranks,
)

__all__ = ["export", "handle", "load_split", "main", "report", "serve"]

DATASET = "peers"  # RecBole's data set name inside the workdir


def load_split(data: Path, fmt: str) -> Split:
    """promptrec's leave-one-out split of ``data`` (the loader `eval offline` uses)."""
    return Split.from_dataset(load_dataset(data, fmt))


def export(split: Split, workdir: Path) -> dict[str, int]:
    """Writes the atomic files and ``split.json`` (see the module docstring); returns counts."""
    root = workdir / "atomic" / DATASET
    root.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float\n"]
    for user, seq in enumerate(split.train):
        # Tokens are our row numbers; the timestamp is the position, so no ties at all.
        lines += [f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(seq)]
    (root / f"{DATASET}.inter").write_text("".join(lines))
    items = "".join(f"{i}\n" for i in range(split.n_items))
    (root / f"{DATASET}.item").write_text("item_id:token\n" + items)
    doc = {
        "n_users": len(split.user_ids),
        "n_items": split.n_items,
        "train": split.train,
        "valid": split.valid.tolist(),
        "test": split.test.tolist(),
    }
    (workdir / "split.json").write_text(json.dumps(doc))
    return {
        "users": doc["n_users"],
        "items": split.n_items,
        "train_interactions": len(lines) - 1,
        "evaluated_users": int((split.test >= 0).sum()),
    }


def handle(split: Split, request: dict[str, Any]) -> dict[str, Any]:
    """One ``serve`` request: ``{"scores": path, "stage": "valid"|"test", "ranks_out"?: path}``.

    Raises:
        ValueError: A bad stage, or a matrix of the wrong shape, type or with NaN.
        OSError: The scores file cannot be read.
    """
    stage = request.get("stage")
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
    scores = np.load(str(request["scores"]), allow_pickle=False)
    scorer = MatrixScorer(scores, len(split.user_ids), split.n_items)
    ranks = stage_ranks(scorer, split, stage, batch_size=1024)
    if request.get("ranks_out"):
        np.save(str(request["ranks_out"]), ranks)
    return {"stage": stage, "n_users": int(ranks.size), "metrics": metrics_from_ranks(ranks)}


def serve(split: Split, stdin: Any = sys.stdin, stdout: Any = sys.stdout) -> None:
    """Answers one JSON line per request line until end of input (errors are replies too)."""
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or "scores" not in request:
                raise ValueError("request must be a JSON object with 'scores' and 'stage'")
            reply = handle(split, request)
        except Exception as exc:  # every failure is reported, and the server goes on
            reply = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def _promptrec_ranks(data: Path, fmt: str, checkpoint: Path) -> dict[str, np.ndarray]:
    """Valid and test ranks of a trained promptrec checkpoint (as ``eval --checkpoint``)."""
    from promptrec.encoder.features import default_cache_dir
    from promptrec.encoder.model import load_model
    from promptrec.encoder.settings import EncoderSettings
    from promptrec.encoder.training import ModelScorer
    from promptrec.evaluation import offline
    from promptrec.evaluation.offline import check_compatible, prepare

    model = load_model(checkpoint)
    prep = prepare(
        data, fmt, EncoderSettings(), default_cache_dir(), profiles=bool(model.config.profile_dim)
    )
    check_compatible(model.config, prep)
    # A checkpoint with a tuned encoder scores with its own item vectors (main's
    # offline.checkpoint_text, as `eval offline --checkpoint` does); older code has only frozen.
    text_of = getattr(offline, "checkpoint_text", None)
    text = text_of(prep, model) if text_of is not None else prep.text
    scorer = ModelScorer(model, text, prep.split.item_ids, prep.profiles)
    return {stage: stage_ranks(scorer, prep.split, stage) for stage in ("valid", "test")}


def report(
    split: Split, runs: list[Path], promptrec: dict[str, np.ndarray] | None, meta: dict[str, Any]
) -> dict[str, Any]:
    """The results.json document: every method's test metrics, intervals and paired tests.

    Args:
        split: Our split (for Pop).
        runs: Per peer, the ``<model>.json`` summary written by ``run_recbole.py``; its chosen
            grid point's ``test.ranks.npy`` lies next to it.
        promptrec: promptrec's ``valid`` and ``test`` ranks; None: no promptrec row, and the
            paired tests are then Pop - other.
        meta: Extra top-level fields (commands, machine, promptrec's source).
    """
    from promptrec.evaluation.baselines import PopScorer
    from promptrec.evaluation.report import uncertainty_report

    ranks, valid = {}, {}
    if promptrec is not None:
        ranks["promptrec"] = promptrec["test"]
        valid["promptrec"] = metrics_from_ranks(promptrec["valid"])
    peers: dict[str, Any] = {}
    for path in runs:
        summary = json.loads(path.read_text())
        name = f"recbole-{summary['model'].lower()}"
        chosen = path.parent / summary["chosen"]["dir"]
        ranks[name] = np.load(chosen / "test.ranks.npy")
        valid[name] = metrics_from_ranks(np.load(chosen / "valid.ranks.npy"))
        peers[name] = summary
    pop = PopScorer(split)
    ranks["pop"] = stage_ranks(pop, split, "test")
    valid["pop"] = metrics_from_ranks(stage_ranks(pop, split, "valid"))
    return {
        "dataset": meta.pop("dataset"),
        "protocol": PROTOCOL,
        **uncertainty_report(ranks, "promptrec" if promptrec is not None else "pop"),
        "valid": valid,
        "peers": peers,
        **meta,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("export", "serve", "report"):
        s = sub.add_parser(name)
        s.add_argument("--data", type=Path, required=True)
        s.add_argument("--format", default="movielens-100k")
        if name != "serve":
            s.add_argument("--workdir", type=Path, required=True)
    r = sub.choices["report"]
    r.add_argument("--checkpoint", type=Path, help="promptrec checkpoint (omit: no promptrec row)")
    r.add_argument("--runs", type=Path, nargs="+", required=True, help="<model>.json files")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--meta", type=Path, help="JSON object merged into the document")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parse(argv)
    split = load_split(args.data, args.format)
    if args.command == "export":
        print(json.dumps(export(split, args.workdir)))
    elif args.command == "serve":
        serve(split)
    else:
        meta = json.loads(args.meta.read_text()) if args.meta else {}
        meta.setdefault("dataset", args.data.name)
        ours = None
        if args.checkpoint is not None:
            meta["promptrec_checkpoint"] = str(args.checkpoint)
            ours = _promptrec_ranks(args.data, args.format, args.checkpoint)
        doc = report(split, args.runs, ours, meta)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
