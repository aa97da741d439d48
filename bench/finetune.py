"""Issue 14 item 6: the effect of encoder fine-tuning on the warm and cold slices, and its cost.

``promptrec bench finetune --data DIR --format FMT`` prepares the data set once, then for each
``--modes`` entry (``none``, ``lora``, ``last-layers``) trains the default recipe with that
encoder mode twice, with the same epoch cap:

* warm: the leave-one-out split of ``promptrec train`` -> validation and test NDCG@10 / HR@10
  (test with 95 % bootstrap intervals over users);
* cold: the strict cold-start protocol of :mod:`promptrec.evaluation.cold_start` (global time
  cut, cold items never trained on, encoded by the tuned encoder as a worker would) ->
  promptrec, Pop and random on the cold test events, with the median rank of the cold targets
  (HR@10 alone is 0 for every method when they all rank cold items low).

Seconds per epoch (optimisation only) and per refresh (re-encoding every item after an epoch)
are recorded. The JSON file is rewritten after every mode, so a capped session keeps what ran.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import print_table, write_json

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the fine-tuning benchmark."""
    p.add_argument("--data", type=Path, required=True, help="data folder")
    p.add_argument("--format", default="movielens-100k", help="data format")
    p.add_argument("--modes", default="none,lora,last-layers", help="encoder modes, in order")
    p.add_argument("--epochs", type=int, default=20, help="epoch cap of every run (default 20)")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--negatives", type=int, default=256, help="as `promptrec train` (256)")
    p.add_argument("--finetune-layers", dest="finetune_layers", type=int, default=1)
    p.add_argument("--finetune-items", dest="finetune_items", type=int, default=64)
    p.add_argument("--finetune-lr", dest="finetune_lr", type=float, default=0.0)
    p.add_argument("--cold-start", dest="cold_start", type=float, default=0.7, help="cut quantile")
    p.add_argument("--no-cold", dest="no_cold", action="store_true", help="warm slice only")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--model-dir", dest="model_dir", type=Path, help="local HF encoder folder")
    p.add_argument("--no-cache", dest="no_cache", action="store_true", help="no text cache")
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def _warm(prep: Any, config: Any, train: Any, finetune: Any) -> dict[str, Any]:
    from promptrec.encoder.training import ModelScorer, train_model
    from promptrec.evaluation.offline import make_tuner
    from promptrec.evaluation.protocol import metrics_from_ranks, stage_ranks
    from promptrec.evaluation.report import intervals

    t0 = time.perf_counter()
    tuner = make_tuner(prep, finetune, train)
    setup = time.perf_counter() - t0
    result = train_model(prep.split, prep.text, config, train, prep.profiles, tuner)
    text = prep.text if result.text is None else result.text
    scorer = ModelScorer(result.model, text, prep.split.item_ids, prep.profiles)
    ranks = stage_ranks(scorer, prep.split, "test")
    return {
        "tuner_setup_seconds": round(setup, 1),
        **result.summary(),
        "test": metrics_from_ranks(ranks),
        "test_intervals": intervals(ranks),
    }


def _cold(cs: Any, prep: Any, config: Any, train: Any, finetune: Any) -> dict[str, Any]:
    """The cold-start protocol's numbers plus the median rank of the cold targets."""
    import numpy as np

    from promptrec.encoder.training import ModelScorer, train_model
    from promptrec.evaluation.baselines import PopScorer
    from promptrec.evaluation.cold_start import RandomScorer
    from promptrec.evaluation.offline import make_tuner
    from promptrec.evaluation.report import uncertainty_report

    tuner = make_tuner(prep, finetune, train)
    result = train_model(cs.split, prep.text, config, train, prep.profiles, tuner)
    text = prep.text if result.text is None else result.text
    ranks = {
        "promptrec": cs.ranks(ModelScorer(result.model, text, cs.split.item_ids, prep.profiles)),
        "pop": cs.ranks(PopScorer(cs.split)),
        "random": cs.ranks(RandomScorer(cs.split.n_items, 0)),
    }
    return {
        **cs.summary(),
        "training": result.summary(),
        "median_rank": {k: float(np.median(r)) + 1 for k, r in ranks.items()},  # 1-based
        **uncertainty_report(ranks, "promptrec"),
    }


def run(args: argparse.Namespace) -> None:
    """Runs the benchmark of the module docstring."""
    import torch

    from promptrec.encoder.features import default_cache_dir
    from promptrec.encoder.finetune import FinetuneConfig
    from promptrec.encoder.model import ModelConfig
    from promptrec.encoder.settings import EncoderSettings
    from promptrec.encoder.training import TrainConfig
    from promptrec.evaluation.cold_start import cold_start_split
    from promptrec.evaluation.offline import model_config, prepare

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = EncoderSettings(device="cpu" if args.device == "cpu" else "auto")
    if args.model_dir is not None:
        settings = settings.model_copy(update={"model_dir": args.model_dir})
    cache = None if args.no_cache else default_cache_dir()
    # The defaults of `promptrec train` (user profiles on).
    prep = prepare(args.data, args.format, settings, cache, profiles=True, progress=False)
    cold = None if args.no_cold else cold_start_split(prep.dataset, args.cold_start)
    config = model_config(prep, ModelConfig())
    train = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        negatives=args.negatives,
        device=args.device,
        progress=True,
    )
    results: dict[str, Any] = {"dataset": prep.dataset.name, "epochs_cap": args.epochs, "runs": {}}
    rows = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        finetune = FinetuneConfig(
            mode=mode, layers=args.finetune_layers, lr=args.finetune_lr, items=args.finetune_items
        )
        entry: dict[str, Any] = {"warm": _warm(prep, config, train, finetune)}
        if cold is not None:
            entry["cold"] = _cold(cold, prep, config, train, finetune)
        results["runs"][mode] = entry
        write_json(args.out, "finetune", results)
        warm = entry["warm"]
        row = [
            mode,
            warm["valid"]["NDCG@10"],
            warm["test"]["NDCG@10"],
            warm["test"]["HR@10"],
            warm["seconds_per_epoch"],
            warm.get("finetune", {}).get("refresh_seconds", 0.0),
        ]
        if cold is not None:
            c = entry["cold"]
            metrics = c["methods"]["promptrec"]
            row += [
                c["training"]["valid"]["NDCG@10"],
                metrics["NDCG@10"],
                metrics["HR@10"],
                c["median_rank"]["promptrec"],
            ]
        rows.append(row)
    headers = ["mode", "valid NDCG@10", "test NDCG@10", "test HR@10", "s/epoch", "s/refresh"]
    if cold is not None:
        headers += ["cold valid NDCG@10", "cold NDCG@10", "cold HR@10", "cold median rank"]
    print_table(f"encoder fine-tuning, {args.epochs}-epoch cap", headers, rows)
