"""Train RecBole 1.2.1 peers (SASRec, GRU4Rec, BERT4Rec) on promptrec's split; OUR evaluator scores.

Runs in the side virtualenv ``.peers-venv`` (RecBole 1.2.1 needs numpy<2; see README.md). RecBole
does the training (its dataset augmentation, TrainDataLoader, model, loss, optimiser and early
stopping); it never evaluates. ``our_eval.py export`` first writes the training interactions of
promptrec's split (and nothing else) as a RecBole atomic data set; this driver then:

  1. builds RecBole's SequentialDataset from it (one training sample per history prefix, exactly
     the samples RecBole's own ``LS`` split would train on, but with OUR train/valid/test items);
  2. after every epoch scores all items for every user from its validation history (our
     training items), sends the ``(users, items)`` matrix to ``our_eval.py serve`` (project venv,
     promptrec's ranking code: history excluded, ties by catalog order) and gives RecBole's early
     stopping that NDCG@10;
  3. reloads the best checkpoint and has the server rank validation and test (test history =
     training items + validation item), writing per-user ranks for the report.

One call trains one grid point of one model (``--point``); ``--summarize`` picks each model's
point by validation NDCG@10. Usage: see bench/peers/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole pickles its Config

__all__ = ["GRID", "PeerTrainer", "main", "summarize", "train_point"]

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DATASET = "peers"
# The validation grid: RecBole's defaults first, then the knobs that matter (dropout, hidden
# size, learning rate); 3 points per model, about what promptrec's own tuning used.
GRID: dict[str, list[dict[str, Any]]] = {
    "SASRec": [
        {"hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "learning_rate": 0.001},
        {"hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "learning_rate": 0.001},
        {"hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "learning_rate": 0.003},
    ],
    "GRU4Rec": [
        {"dropout_prob": 0.3, "learning_rate": 0.001},
        {"dropout_prob": 0.3, "learning_rate": 0.003},
        {"dropout_prob": 0.1, "learning_rate": 0.003, "hidden_size": 64},
    ],
    "BERT4Rec": [
        {"hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "learning_rate": 0.001},
        {"hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "learning_rate": 0.003},
    ],
}


def _stub_ray() -> None:
    """``import recbole`` imports ``recbole.quick_start``, which imports ray; we never use it."""
    if "ray" not in sys.modules:
        try:
            import ray  # noqa: F401
        except ImportError:
            stub, tune = types.ModuleType("ray"), types.ModuleType("ray.tune")
            stub.tune = tune  # type: ignore[attr-defined]
            sys.modules["ray"], sys.modules["ray.tune"] = stub, tune


def _fast_gelu() -> None:
    """RecBole's FeedForward.gelu is erf GELU in 5 separate elementwise ops (and 5 saved
    activations of (B, L, inner) for backward); torch's fused F.gelu computes the same function
    (``approximate='none'``) in one kernel. Must run before models are built."""
    import torch.nn.functional as F
    from recbole.model.layers import FeedForward

    FeedForward.gelu = lambda self, x: F.gelu(x)  # type: ignore[method-assign]


class ScoreClient:
    """The pipe to ``our_eval.py serve`` (project venv): promptrec's evaluator."""

    def __init__(self, python: str, data: Path, fmt: str) -> None:
        cmd = [python, str(HERE / "our_eval.py"), "serve", "--data", str(data), "--format", fmt]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def rank(self, scores_path: Path, stage: str, ranks_out: Path | None = None) -> dict[str, Any]:
        req = {"scores": str(scores_path), "stage": stage}
        if ranks_out is not None:
            req["ranks_out"] = str(ranks_out)
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"score server exited with {self.proc.wait()}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"score server: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def full_scores(model: Any, dataset: Any, histories: list[list[int]], n_items: int) -> Any:
    """``(n_users, n_items)`` float32 full-sort scores in OUR item order (numpy).

    Each history (our item rows, oldest first) becomes RecBole's input: the last
    ``MAX_ITEM_LIST_LENGTH`` items as internal ids, left-aligned and zero-padded.
    """
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    tokens = dataset.field2id_token["item_id"]  # internal id -> token (our row as str); 0 = PAD
    to_internal = np.zeros(n_items, dtype=np.int64)
    to_internal[[int(t) for t in tokens[1:]]] = np.arange(1, len(tokens))
    max_len = model.max_seq_length
    seq = np.zeros((len(histories), max_len), dtype=np.int64)
    lengths = np.ones(len(histories), dtype=np.int64)  # a user without history: 1 PAD item
    for u, hist in enumerate(histories):
        h = to_internal[np.asarray(hist[-max_len:], dtype=np.int64)]
        seq[u, : len(h)], lengths[u] = h, max(len(h), 1)
    out = np.empty((len(histories), n_items), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(histories), 512):
            batch = Interaction(
                {
                    model.ITEM_SEQ: torch.from_numpy(seq[start : start + 512]),
                    model.ITEM_SEQ_LEN: torch.from_numpy(lengths[start : start + 512]),
                }
            )
            batch = batch.to(next(model.parameters()).device)
            s = model.full_sort_predict(batch).float().cpu().numpy()  # (b, n_internal); 0 = PAD
            out[start : start + 512] = s[:, to_internal]
    return out


class _BudgetSpent(Exception):
    """Raised from the epoch callback when ``--time-budget-s`` would be overrun."""


def _trainer_class(base: type) -> type:
    class PeerTrainer(base):  # type: ignore[misc, valid-type]
        """RecBole's trainer; validation = our evaluator (NDCG@10) on our validation targets."""

        peer: dict[str, Any]

        def _valid_epoch(self, valid_data: Any, show_progress: bool = False) -> Any:
            import numpy as np

            p = self.peer
            t0 = time.perf_counter()
            scores = full_scores(self.model, p["dataset"], p["valid_hist"], p["n_items"])
            np.save(p["dir"] / "scores.npy", scores)
            reply = p["client"].rank(p["dir"] / "scores.npy", "valid")
            p["valid_s"].append(round(time.perf_counter() - t0, 2))
            self.model.train()
            return reply["metrics"]["NDCG@10"], reply["metrics"]

    return PeerTrainer


PeerTrainer = _trainer_class  # exported name: the factory (RecBole is imported lazily)


def train_point(args: argparse.Namespace, name: str, point: int) -> dict[str, Any]:
    """Trains grid point ``point`` of ``name`` to early stopping; writes and returns run.json."""
    import numpy as np
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.data.dataloader import TrainDataLoader
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    split = json.loads((args.workdir / "split.json").read_text())
    out_dir = args.workdir / "runs" / name / f"p{point}"
    out_dir.mkdir(parents=True, exist_ok=True)
    hparams = GRID[name][point]
    config = Config(
        model=name,
        dataset=DATASET,
        config_dict={
            "data_path": str(args.workdir / "atomic"),
            "checkpoint_dir": str(out_dir),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp",
            "MAX_ITEM_LIST_LENGTH": 50,
            "loss_type": "CE",
            "train_neg_sample_args": None,
            "epochs": args.epochs,
            "stopping_step": args.stopping_step,
            "train_batch_size": args.train_batch_size,
            "eval_step": 1,
            "valid_metric": "NDCG@10",
            "seed": 2020,
            "reproducibility": True,
            "use_gpu": args.device == "cuda",
            "enable_amp": args.amp,
            "show_progress": False,
            **hparams,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0 = time.perf_counter()
    cache = args.workdir / f"dataset-L{config['MAX_ITEM_LIST_LENGTH']}.pkl"
    if cache.is_file():  # the same for every model and grid point; RecBole's build is ~1 CPU min
        dataset = pickle.loads(cache.read_bytes())
    else:
        dataset = create_dataset(config)
        # What Dataset.build() does first; the augmentation (one sample per prefix of our train
        # items) happens here. build() itself is never called: its split would re-split our train.
        dataset._change_feat_format()
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # atomic: two processes may race here
        tmp.write_bytes(pickle.dumps(dataset))
        tmp.replace(cache)
    n_items = split["n_items"]
    assert dataset.item_num - 1 == n_items, (dataset.item_num, n_items)
    train_data = TrainDataLoader(config, dataset, None, shuffle=True)
    prep_s = time.perf_counter() - t0
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, dataset).to(config["device"])
    trainer = _trainer_class(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
    train_hist = split["train"]
    test_hist = [[*t, v] if v >= 0 else t for t, v in zip(train_hist, split["valid"], strict=True)]
    client = ScoreClient(args.project_python, args.data, args.format)
    trainer.peer = {
        "dataset": dataset,
        "valid_hist": train_hist,
        "n_items": n_items,
        "dir": out_dir,
        "client": client,
        "valid_s": [],
    }
    curve: list[float] = []
    epoch_times: list[float] = []
    epoch_cpu: list[float] = []
    last = [time.perf_counter(), time.process_time()]

    def on_epoch(epoch_idx: int, valid_score: float) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        epoch_times.append(round(now - last[0], 1))
        epoch_cpu.append(round(cpu - last[1], 1))
        last[:] = [now, cpu]
        curve.append(round(float(valid_score), 5))
        progress = {"valid_curve": curve, "seconds_per_epoch_wall": epoch_times}
        (out_dir / "progress.json").write_text(json.dumps(progress) + "\n")
        print(
            f"[{name} p{point}] epoch {epoch_idx} valid NDCG@10 {valid_score:.4f} "
            f"({epoch_times[-1]:.0f} s wall, {epoch_cpu[-1]:.0f} s cpu)",
            flush=True,
        )
        if args.time_budget_s and now - t1 + epoch_times[-1] > args.time_budget_s:
            raise _BudgetSpent  # the next epoch would overrun: stop, test the best checkpoint

    if args.bench_steps:
        return _bench_steps(trainer, train_data, args.bench_steps, name, prep_s)
    t1 = time.perf_counter()
    last[:] = [t1, time.process_time()]
    try:
        trainer.fit(train_data, True, saved=True, show_progress=False, callback_fn=on_epoch)
        stopped_by = "early stopping" if len(curve) < args.epochs else "epoch cap"
    except _BudgetSpent:
        stopped_by = "time budget"
    train_s = time.perf_counter() - t1
    ckpt = torch.load(trainer.saved_model_file, map_location="cpu")
    model.load_state_dict(ckpt["state_dict"])
    result = {}
    for stage, hist in (("valid", train_hist), ("test", test_hist)):
        np.save(out_dir / "scores.npy", full_scores(model, dataset, hist, n_items))
        reply = client.rank(out_dir / "scores.npy", stage, out_dir / f"{stage}.ranks.npy")
        result[stage] = reply["metrics"]
    client.close()
    (out_dir / "scores.npy").unlink()
    os.remove(trainer.saved_model_file)  # ~1 MB each; the ranks are what the report needs
    best = int(np.argmax(curve))
    doc = {
        "model": name,
        "point": point,
        "hparams": hparams,
        "train_batch_size": args.train_batch_size,
        "valid_ndcg10": result["valid"]["NDCG@10"],
        "valid": result["valid"],
        "valid_curve": curve,
        "best_epoch": best + 1,
        "epochs_run": len(curve),
        "epochs_cap": args.epochs,
        "stopping_step": args.stopping_step,
        "stopped_by": stopped_by,
        "time_budget_s": args.time_budget_s,
        "seconds_per_epoch_wall": epoch_times,
        "seconds_per_epoch_cpu": epoch_cpu,
        "seconds_validation": trainer.peer["valid_s"],
        "prep_s": round(prep_s, 1),
        "train_s": round(train_s, 1),
        "train_samples": len(dataset),
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "run.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _bench_steps(trainer: Any, train_data: Any, steps: int, name: str, prep_s: float) -> Any:
    """Times ``steps`` training batches (RecBole's own step: loader, loss, backward, Adam)."""
    import torch

    trainer.model.train()
    it = iter(train_data)
    wall, cpu = [], []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        w, c = time.perf_counter(), time.process_time()
        batch = next(it).to(trainer.device)
        trainer.optimizer.zero_grad()
        with torch.autocast(device_type="cpu", enabled=trainer.enable_amp):
            loss = trainer.model.calculate_loss(batch)
        loss.backward()
        trainer.optimizer.step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    per_epoch = len(train_data) * sum(cpu[1:]) / steps
    doc = {
        "model": name,
        "steps": steps,
        "batches_per_epoch": len(train_data),
        "cpu_s_per_step": round(sum(cpu[1:]) / steps, 3),
        "wall_s_per_step": round(sum(wall[1:]) / steps, 3),
        "cpu_s_per_epoch_est": round(per_epoch, 1),
        "prep_s": round(prep_s, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(doc), flush=True)
    return doc


def summarize(workdir: Path, name: str) -> dict[str, Any]:
    """Picks ``name``'s grid point by validation NDCG@10 (our evaluator); writes <name>.json."""
    runs = sorted((workdir / "runs" / name).glob("p*/run.json"))
    if not runs:
        raise SystemExit(f"no finished grid point of {name} under {workdir}/runs")
    points = [json.loads(p.read_text()) for p in runs]
    best = max(points, key=lambda d: d["valid_ndcg10"])
    keys = ("point", "hparams", "valid_ndcg10", "best_epoch", "epochs_run", "stopped_by")
    doc = {
        "model": name,
        "grid": [{k: d[k] for k in keys} for d in points],
        "grid_points_defined": len(GRID[name]),
        "chosen": {**best, "dir": f"{name}/p{best['point']}"},
        "selection": "highest validation NDCG@10 (our evaluator) over the grid",
    }
    (workdir / "runs" / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, required=True, help="where our_eval.py export wrote")
    p.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared/data/ml-100k")
    p.add_argument("--format", default="movielens-100k")
    p.add_argument("--model", required=True, choices=sorted(GRID))
    p.add_argument("--point", type=int, nargs="*", default=None, help="grid points (default all)")
    p.add_argument("--summarize", action="store_true", help="only pick the best finished point")
    p.add_argument("--epochs", type=int, default=300, help="epoch cap (early stopping ends runs)")
    p.add_argument("--stopping-step", type=int, default=10, help="patience, epochs")
    p.add_argument(
        "--time-budget-s",
        type=float,
        default=0.0,
        help="training wall-time cap per grid point (0: none; early stopping decides)",
    )
    p.add_argument("--train-batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--amp", action="store_true", help="RecBole's enable_amp (bf16 on CPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bench-steps", type=int, default=0, help="only time N training steps")
    p.add_argument("--no-fast-gelu", action="store_true", help="keep RecBole's 5-op erf GELU")
    p.add_argument(
        "--project-python",
        default=os.environ.get("PROMPTREC_PYTHON", str(REPO_ROOT / ".venv/bin/python")),
        help="python of the project venv (runs our_eval.py serve)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parse(argv)
    args.workdir = args.workdir.resolve()
    if not args.summarize:
        _stub_ray()
        import torch

        torch.set_num_threads(args.threads)
        if not args.no_fast_gelu:
            _fast_gelu()
        os.chdir(args.workdir)  # RecBole writes ./log and ./log_tensorboard: not into the repo
        for point in args.point if args.point is not None else range(len(GRID[args.model])):
            doc = train_point(args, args.model, point)
            if args.bench_steps:
                return 0
            print(
                f"[{args.model} p{point}] {doc['stopped_by']} after {doc['epochs_run']} epochs, "
                f"best {doc['best_epoch']}, valid NDCG@10 {doc['valid_ndcg10']:.4f}",
                flush=True,
            )
    doc = summarize(args.workdir, args.model)
    print(f"[{args.model}] chosen point {doc['chosen']['point']}: {doc['chosen']['hparams']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
