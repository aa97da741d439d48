"""Run RecBole 1.2.1 peers (Pop, SASRec, GRU4Rec) on MovieLens-100K, leave-one-out, full ranking.

This script runs in the side virtualenv ``.peers-venv`` (see ``bench/peers/README.md``), never in
the project's ``.venv``: RecBole 1.2.1 needs numpy<2 and a few imports that promptrec does not.

What it does:
  1. Reads ``u.data`` from ``--data`` (tab-separated ``user item rating timestamp``) and writes it,
     every rating kept as an interaction and in file order, as a RecBole atomic file
     ``<workdir>/atomic/ml-100k/ml-100k.inter`` with user/item ids as tokens. The data never enters
     the repo.
  2. Trains and evaluates each model with the same protocol as ``promptrec eval offline``: per-user
     time-ordered leave-one-out (``split LS valid_and_test, order TO``), ranking over all items
     (``mode full``), items already in the user's history masked out; early stopping on validation
     NDCG@10.
  3. Writes ``results.json`` (test metrics under ``methods``, validation metrics under ``valid``).

Usage (from the repo root)::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 nice -n 15 .peers-venv/bin/python bench/peers/run_recbole.py
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

# RecBole's best-model checkpoint holds its Config object; torch>=2.6 refuses to unpickle that with
# the default weights_only=True. Must be set before torch is imported.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

__all__ = [
    "DEFAULT_MODELS",
    "METRIC_KEYS",
    "POP_REFERENCE",
    "build_config",
    "convert_ml100k",
    "main",
    "run_model",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "ml-100k"
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
DATASET = "ml-100k"
PROTOCOL = "leave-one-out (LS valid_and_test, TO), full ranking, seen items excluded"
DEFAULT_MODELS = ("Pop", "SASRec", "GRU4Rec")
# RecBole metric name -> name used in promptrec's results.json.
METRIC_KEYS = {
    "hit@5": "HR@5",
    "hit@10": "HR@10",
    "hit@20": "HR@20",
    "ndcg@5": "NDCG@5",
    "ndcg@10": "NDCG@10",
    "ndcg@20": "NDCG@20",
    "mrr@10": "MRR@10",
}
# Pop measured with RecBole 1.2.1 on this protocol (issue 6); a conversion sanity check.
POP_REFERENCE = {"HR@10": 0.0721, "NDCG@10": 0.0403}
# RecBole's own default (properties/overall.yaml). The headline Pop runs with it, i.e. Pop as
# RecBole runs it out of the box; CE sequential models need None. See _pop_exact_counts for why
# Pop's numbers depend on this at all.
RECBOLE_DEFAULT_NEG_SAMPLING = {
    "distribution": "uniform",
    "sample_num": 1,
    "alpha": 1.0,
    "dynamic": False,
    "candidate_num": 0,
}
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _stub_ray() -> None:
    """Let ``import recbole`` succeed without ray.

    ``recbole/__init__.py`` imports ``recbole.quick_start``, which does ``from ray import tune`` at
    module level; only hyper-parameter tuning uses it. Installing ray (hundreds of MB, its own pins)
    just for that import is what the ``--no-deps`` install avoids, so an empty module stands in.
    """
    if "ray" in sys.modules:
        return
    try:
        import ray  # noqa: F401  # a real ray, if someone installed one, wins
    except ImportError:
        ray_stub = types.ModuleType("ray")
        tune_stub = types.ModuleType("ray.tune")
        ray_stub.tune = tune_stub  # type: ignore[attr-defined]
        sys.modules["ray"] = ray_stub
        sys.modules["ray.tune"] = tune_stub


def convert_ml100k(data_dir: Path, atomic_root: Path) -> dict[str, int]:
    """Write ``u.data`` as RecBole's ``ml-100k.inter`` atomic file under ``atomic_root/ml-100k/``.

    Every rating is kept as an interaction (no rating threshold, no k-core filter), in file order,
    so RecBole's stable time sort breaks timestamp ties by file order, the same way every run.

    Returns:
        Counts: ``interactions``, ``users``, ``items``.

    Raises:
        FileNotFoundError: ``u.data`` is missing.
        ValueError: a line is not four tab-separated integers.
    """
    src = data_dir / "u.data"
    if not src.is_file():
        raise FileNotFoundError(
            f"{src} not found: --data must be the MovieLens-100K folder (with u.data)"
        )
    out_dir = atomic_root / DATASET
    out_dir.mkdir(parents=True, exist_ok=True)
    users: set[str] = set()
    items: set[str] = set()
    n = 0
    with src.open(encoding="latin-1") as fin, (out_dir / f"{DATASET}.inter").open("w") as fout:
        fout.write(INTER_HEADER)
        for lineno, line in enumerate(fin, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts):
                raise ValueError(
                    f"{src}:{lineno}: expected 'user item rating timestamp' integers, got {line!r}"
                )
            user, item, rating, ts = parts
            fout.write(f"{user}\t{item}\t{rating}\t{ts}\n")
            users.add(user)
            items.add(item)
            n += 1
    if n == 0:
        raise ValueError(f"{src} holds no interactions")
    return {"interactions": n, "users": len(users), "items": len(items)}


def build_config(
    args: argparse.Namespace, atomic_root: Path, workdir: Path, use_gpu: bool
) -> dict[str, Any]:
    """The RecBole config shared by every model (model hyper-parameters stay RecBole defaults)."""
    return {
        "data_path": str(atomic_root),
        "checkpoint_dir": str(workdir / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "rm_dup_inter": None,
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "MAX_ITEM_LIST_LENGTH": 50,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        "seed": 2020,
        "reproducibility": True,
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "train_batch_size": args.train_batch_size,
        "eval_batch_size": 4096,
        "use_gpu": use_gpu,
        "show_progress": False,
        "worker": 0,
    }


def _rename(result: dict[str, Any]) -> dict[str, float]:
    return {ours: round(float(result[theirs]), 4) for theirs, ours in METRIC_KEYS.items()}


def _pop_exact_counts(
    trainer: Any, train_data: Any, valid_data: Any, test_data: Any
) -> dict[str, Any]:
    """Re-score a trained RecBole Pop with exact train-split item counts, same split and evaluator.

    RecBole 1.2.1's ``Pop.calculate_loss`` does ``item_cnt[item] = item_cnt[item] + 1`` with
    advanced indexing, which adds 1 per *batch* an item appears in, not per interaction; its ranking
    therefore depends on the batch size and on negative sampling. This gives the bug-free popularity
    baseline on the identical split.
    """
    import torch

    model = trainer.model
    item_ids = train_data._dataset.inter_feat[model.ITEM_ID]  # (n_train,) int64 item ids
    counts = torch.bincount(item_ids, minlength=model.n_items).unsqueeze(1)  # (n_items, 1)
    model.item_cnt = counts.to(model.item_cnt.device)
    model.max_cnt = torch.max(model.item_cnt, dim=0)[0]
    return {
        "test": _rename(trainer.evaluate(test_data, load_best_model=False, show_progress=False)),
        "valid": _rename(trainer.evaluate(valid_data, load_best_model=False, show_progress=False)),
    }


class _BudgetExhausted(Exception):
    """Raised from RecBole's epoch callback to end training when the next epoch would overrun."""


def run_model(
    name: str,
    base_config: dict[str, Any],
    epochs: int,
    overrides: dict[str, Any] | None = None,
    time_budget_s: float = 0.0,
) -> dict[str, Any]:
    """Train ``name`` (early stopping on valid NDCG@10), then evaluate its best checkpoint on test.

    Returns:
        ``test`` and ``valid`` metrics, ``epochs_run``, ``stopped_by``, ``best_epoch``,
        ``valid_curve``, ``wall_s`` (data preparation included) and, for Pop, ``exact_counts``.
    """
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    start = time.perf_counter()
    config_dict = {**base_config, "epochs": epochs, **(overrides or {})}
    config = Config(model=name, dataset=DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    curve: list[tuple[int, float]] = []
    epoch_start = [time.perf_counter()]
    stopped_by_budget = [False]

    def on_epoch(epoch_idx: int, valid_score: float) -> None:
        # Called by RecBole after the epoch's validation and after saving a new best checkpoint.
        now = time.perf_counter()
        epoch_s, epoch_start[0] = now - epoch_start[0], now
        curve.append((epoch_idx, round(float(valid_score), 4)))
        print(
            f"[{name}] epoch {epoch_idx} valid NDCG@10 {valid_score:.4f} "
            f"(epoch {epoch_s:.0f}s, total {now - start:.0f}s)",
            flush=True,
        )
        if time_budget_s and now - start + epoch_s > time_budget_s:
            stopped_by_budget[0] = True
            raise _BudgetExhausted

    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch)
    except _BudgetExhausted:
        print(f"[{name}] time budget {time_budget_s:.0f}s reached, stopping", flush=True)
    best_valid = trainer.best_valid_result
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    wall = time.perf_counter() - start
    best_epoch = max(curve, key=lambda c: c[1])[0] if curve else -1
    extra = (
        {"exact_counts": _pop_exact_counts(trainer, train_data, valid_data, test_data)}
        if name == "Pop"
        else {}
    )
    return {
        **extra,
        "test": _rename(test_result),
        "valid": _rename(best_valid),
        "epochs_run": len(curve),
        "stopped_by": "time budget"
        if stopped_by_budget[0]
        else ("early stopping" if len(curve) < epochs else "epoch cap"),
        "best_epoch": best_epoch,
        "valid_curve": [score for _, score in curve],
        "wall_s": round(wall, 1),
        # RecBole's remapped id counts (index 0 is padding); they must equal the input's.
        "dataset_stats": {"users": dataset.user_num - 1, "items": dataset.item_num - 1},
        "device": str(config["device"]),
    }


def _path_digest(path: Path) -> str:
    # str hash() is salted per process; the lock name must agree across processes.
    return hashlib.sha1(str(path).encode()).hexdigest()[:12]


def _merge_write(out_path: Path, entry: dict[str, Any]) -> None:
    """Merge one model's entry into ``out_path`` under a file lock, then replace it atomically.

    Several driver processes (e.g. SASRec and GRU4Rec run side by side) may share one results.json;
    each section is a dict keyed by method, so entries from other models and earlier runs are kept.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives in the temp dir so no stray file is left beside results.json.
    lock_path = Path(tempfile.gettempdir()) / f"recbole-peers-{_path_digest(out_path)}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out: dict[str, Any] = {"dataset": DATASET, "protocol": PROTOCOL, "methods": {}}
        if out_path.is_file():
            out.update(json.loads(out_path.read_text()))
        out["dataset"], out["protocol"] = DATASET, PROTOCOL
        for section, values in entry.items():
            if section == "config":
                out["config"] = {**out.get("config", {}), **values}
            else:
                out.setdefault(section, {}).update(values)
        tmp = out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(out_path)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="MovieLens-100K folder (with u.data)"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results.json to write")
    p.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated RecBole model names"
    )
    p.add_argument(
        "--epochs", type=int, default=50, help="max epochs for trained models (cap for 2 CPU cores)"
    )
    p.add_argument(
        "--stopping-step",
        type=int,
        default=10,
        help="early-stop patience in epochs (valid NDCG@10)",
    )
    p.add_argument(
        "--time-budget-s",
        type=float,
        default=1500.0,
        help="per-model wall-time budget; training stops after the epoch that would let the next "
        "one overrun it (0 = none). The best-validation checkpoint is then evaluated on test.",
    )
    p.add_argument("--train-batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--cpu", action="store_true", help="stay on CPU even when CUDA is available")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch dir for atomic files, logs, checkpoints (default: a fresh dir under /tmp)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parse(argv)
    _stub_ray()
    import torch

    torch.set_num_threads(args.threads)
    use_gpu = torch.cuda.is_available() and not args.cpu
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="recbole-peers-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_root = workdir / "atomic"
    data_dir = args.data.resolve()
    counts = convert_ml100k(data_dir, atomic_root)
    print(f"converted {data_dir}/u.data -> {atomic_root}/{DATASET}: {counts}", flush=True)
    # RecBole writes ./log, ./log_tensorboard relative to the working directory: not into the repo.
    out_path = args.out.resolve()
    os.chdir(workdir)
    base = build_config(args, atomic_root, workdir, use_gpu)

    import recbole

    shared = {k: v for k, v in base.items() if k not in {"data_path", "checkpoint_dir", "epochs"}}
    config_info = {
        **shared,
        "epochs_cap": args.epochs,
        "time_budget_s_per_model": args.time_budget_s,
        "pop_epochs": 1,  # RecBole's TraditionalTrainer forces 1 epoch for Pop
        "pop_train_neg_sample_args": RECBOLE_DEFAULT_NEG_SAMPLING,
        "threads_per_process": args.threads,
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "device": "cuda" if use_gpu else "cpu",
        "model_hparams": "RecBole 1.2.1 defaults (properties/model/<Model>.yaml)",
        "input": counts,
    }
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        epochs = 1 if name == "Pop" else args.epochs
        print(f"=== {name} (max {epochs} epochs, device {config_info['device']}) ===", flush=True)
        extra: dict[str, Any] = {}
        if name == "Pop":
            no_neg = run_model(name, base, epochs)
            pop_sampling = {"train_neg_sample_args": RECBOLE_DEFAULT_NEG_SAMPLING}
            res = run_model(name, base, epochs, pop_sampling)
            extra["pop_variants"] = {
                "recbole-pop-no-neg-sampling": {
                    **no_neg["test"],
                    "valid": no_neg["valid"],
                    "note": "train_neg_sample_args None (as the CE models); same RecBole Pop",
                },
                "pop-exact-counts": {
                    **res["exact_counts"]["test"],
                    "valid": res["exact_counts"]["valid"],
                    "note": "RecBole split and evaluator, item_cnt set to exact train-split counts",
                },
            }
        else:
            res = run_model(name, base, epochs, time_budget_s=args.time_budget_s)
        key = f"recbole-{name.lower()}"
        entry = {
            "methods": {key: res["test"]},
            "valid": {key: res["valid"]},
            "epochs_run": {key: res["epochs_run"]},
            "stopped_by": {key: res["stopped_by"]},
            "best_epoch": {key: res["best_epoch"]},
            "wall_s": {key: res["wall_s"]},
            "valid_curve": {key: res["valid_curve"]},
            "config": {**config_info, "dataset_stats": res["dataset_stats"]},
            **extra,
        }
        _merge_write(out_path, entry)
        print(
            f"[{name}] test {res['test']} epochs {res['epochs_run']} ({res['stopped_by']}) "
            f"wall {res['wall_s']}s",
            flush=True,
        )
        if name == "Pop":
            got = res["test"]
            off = {k: (got[k], v) for k, v in POP_REFERENCE.items() if abs(got[k] - v) > 0.002}
            verdict = "OK" if not off else f"differs (got, issue 6) {off}; see README"
            print(f"Pop sanity check vs issue 6: {verdict}", flush=True)
    print(f"wrote {out_path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
