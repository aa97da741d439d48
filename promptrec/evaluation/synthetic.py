"""Training time per epoch on a generated catalog: full vs sampled softmax at any catalog size.

No real data set of ~10k items is available offline, so this generates one: users with
20-80 interactions each, items drawn without repetition from a Zipf(1) popularity law, and
random unit "text" vectors (the time of an epoch does not depend on what the text says). It
trains :func:`~promptrec.encoder.training.train_model` for a few epochs per setting and reports
the optimisation seconds per epoch (validation excluded). A benchmark: it measures, it asserts
nothing.

Usage: ``python -m promptrec.evaluation.synthetic --items 10000 --users 2000 --negatives 0,256``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptrec.encoder.model import ModelConfig
from promptrec.encoder.training import TrainConfig, train_model
from promptrec.evaluation.protocol import Split

__all__ = ["main", "synthetic_split", "time_epochs"]


def synthetic_split(
    n_items: int, n_users: int, min_len: int = 20, max_len: int = 80, seed: int = 0
) -> Split:
    """A leave-one-out :class:`Split` of generated Zipf-popular sequences.

    Raises:
        ValueError: ``min_len < 3`` or more items per user than the catalog holds.
    """
    if min_len < 3 or max_len < min_len or max_len > n_items:
        raise ValueError(f"need 3 <= min_len <= max_len <= n_items, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    train, valid, test = [], [], []
    for _ in range(n_users):
        length = int(rng.integers(min_len, max_len + 1))
        seq = rng.choice(n_items, size=length, replace=False, p=p).tolist()
        train.append(seq[:-2])
        valid.append(seq[-2])
        test.append(seq[-1])
    items = [f"s{i}" for i in range(n_items)]
    users = [f"u{u}" for u in range(n_users)]
    return Split(items, users, train, np.array(valid), np.array(test))


def time_epochs(
    split: Split,
    negatives: Sequence[int],
    epochs: int = 2,
    text_dim: int = 384,
    sampler: str = "uniform",
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per ``negatives`` setting: seconds per epoch and the last validation NDCG@10."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(split.n_items, text_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    out = {}
    for n in negatives:
        train = TrainConfig(
            epochs=epochs, patience=epochs, negatives=n, sampler=sampler, progress=False
        )
        result = train_model(split, text, ModelConfig(text_dim=text_dim), train)
        out[f"negatives={n}"] = {
            "seconds_per_epoch": [round(s, 2) for s in result.epoch_seconds],
            "valid_ndcg10_curve": [round(x, 5) for x in result.curve],
            "device": result.device,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: prints the JSON of :func:`time_epochs`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--negatives", default="0,256", help="comma-separated settings")
    parser.add_argument("--sampler", choices=["uniform", "pop"], default="uniform")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    try:
        negatives = [int(n) for n in args.negatives.split(",")]
        split = synthetic_split(args.items, args.users)
    except ValueError as exc:
        print(f"synthetic: error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    interactions = sum(len(t) + 2 for t in split.train)
    result = {
        "items": args.items,
        "users": args.users,
        "interactions": interactions,
        "sampler": args.sampler,
        "epochs": time_epochs(split, negatives, args.epochs, sampler=args.sampler),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
