"""``promptrec train``, ``promptrec eval offline``, ``promptrec eval stream`` and ``eval ab``.

Registered by :mod:`promptrec.cli.main`. Torch, the encoder and the broker are imported inside
the command functions so that ``promptrec --help`` stays fast. Exit codes: 0 success, 1 runtime
failure (unreadable data, bad checkpoint, broker or worker failure), 2 usage error (a data folder
or checkpoint that does not exist, an output path that is a folder, ``--plot`` without the
optional matplotlib). Failures print one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from promptrec.cli.argtypes import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["register"]

_FORMATS = ("movielens-100k", "movielens-csv", "jsonl", "amazon")
# Chosen on ML-100K validation (NOTES-quality.md): 256 uniform negatives matched or beat the
# full softmax epoch for epoch (converged: validation NDCG@10 0.1342 vs 0.1313) at a lower
# cost per epoch. TrainConfig keeps 0 (the exact loss) as the library default.
DEFAULT_NEGATIVES = 256
_PLOT_HELP = "needs matplotlib: pip install 'promptrec[plot]'"


class _Usage(Exception):
    """A bad argument found after parsing (exit code 2)."""


def _err(command: str, message: str) -> None:
    print(f"promptrec {command}: error: {message}", file=sys.stderr)


def _check_paths(args: argparse.Namespace) -> None:
    if not args.data.is_dir():
        raise _Usage(f"--data {args.data}: no such folder")
    if args.out.is_dir():
        raise _Usage(f"--out {args.out} is a folder; give a file name")
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None and not checkpoint.is_file():
        raise _Usage(f"--checkpoint {checkpoint}: no such file")
    plot = getattr(args, "plot", None)
    if plot is not None:
        if plot.is_dir():
            raise _Usage(f"--plot {plot} is a folder; give a file name")
        from promptrec.evaluation.plots import PlotUnavailableError, require_matplotlib

        # Before the evaluation runs: a missing extra should not cost a long run.
        try:
            require_matplotlib()
        except PlotUnavailableError as exc:
            raise _Usage(str(exc)) from None


def _run(command: str, body: Any, args: argparse.Namespace) -> int:
    """Runs ``body(args)``; maps expected failures to one line and an exit code."""
    from promptrec.encoder.exceptions import EncoderError

    try:
        _check_paths(args)
        return int(body(args))
    except _Usage as exc:
        _err(command, str(exc))
        return 2
    except EncoderError as exc:  # DatasetError, CheckpointError, ModelLoadError, PromptError
        _err(command, str(exc))
        return 1
    except OSError as exc:
        detail = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        _err(command, detail)
        return 1


def _settings(args: argparse.Namespace) -> Any:
    from promptrec.encoder.settings import EncoderSettings

    overrides = {"model_dir": args.model_dir, "device": args.device}
    return EncoderSettings(**{k: v for k, v in overrides.items() if v is not None})


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    from promptrec.encoder.model import ModelConfig
    from promptrec.encoder.training import TrainConfig

    model = ModelConfig(
        dim=args.dim,
        max_len=args.max_len,
        layers=args.layers,
        heads=args.heads,
        dropout=args.dropout,
        id_dropout=args.id_dropout,
        use_ids=not args.no_ids,
        temperature=args.temperature,
    )
    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        device=args.device or "auto",
        progress=not args.quiet,
        negatives=args.negatives,
        sampler=args.sampler,
    )
    return model, train


def _finetune(args: argparse.Namespace) -> Any:
    from promptrec.encoder.finetune import FinetuneConfig

    return FinetuneConfig(
        mode=args.finetune_encoder,
        layers=args.finetune_layers,
        lr=args.finetune_lr,
        items=args.finetune_items,
    )


def _prepare(args: argparse.Namespace) -> Any:
    import logging

    from promptrec.encoder.features import default_cache_dir
    from promptrec.evaluation.offline import prepare

    if not args.quiet:
        logging.getLogger("promptrec").setLevel(logging.INFO)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return prepare(
        args.data,
        args.format,
        _settings(args),
        cache,
        profiles=args.user_profile,
        progress=not args.quiet,
        skip_users=getattr(args, "skip_users", 0),
        strict=args.strict,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from promptrec.evaluation.offline import run_train

    prep = _prepare(args)
    model, train = _configs(args)
    head = None
    if args.train_head:
        from promptrec.encoder.head_training import HeadTrainConfig

        head = HeadTrainConfig(epochs=args.head_epochs, seed=args.seed)
    summary = run_train(
        prep, args.out, model, train, head, fusion=args.fusion, finetune=_finetune(args)
    )
    valid, test, ci = summary["valid"], summary["test"], summary["test_intervals"]
    print(
        f"best epoch {summary['best_epoch']}/{summary['epochs_run']} in "
        f"{summary['train_seconds']} s on {summary['device']}; "
        f"valid NDCG@10 {valid['NDCG@10']:.4f}, test NDCG@10 {test['NDCG@10']:.4f} "
        f"[{ci['NDCG@10'][0]:.4f}, {ci['NDCG@10'][1]:.4f}] "
        f"HR@10 {test['HR@10']:.4f} [{ci['HR@10'][0]:.4f}, {ci['HR@10'][1]:.4f}] (95% CI)"
    )
    if "fusion" in summary:
        f = summary["fusion"]
        print(
            f"text fusion alpha {f['alpha']} (valid NDCG@10 {f['valid_ndcg10']:.4f}; "
            f"trained only {f['valid_ndcg10_trained_only']:.4f}, "
            f"text only {f['valid_ndcg10_text_only']:.4f})"
        )
    if "head" in summary:
        h = summary["head"]
        print(
            f"scoring head over {h['candidates']} candidates: {h['chosen']} chosen on validation "
            f"(NDCG@10 head {h['valid']['head']['NDCG@10']:.4f} vs cosine "
            f"{h['valid']['cosine']['NDCG@10']:.4f}; test {h['test']['head']['NDCG@10']:.4f} vs "
            f"{h['test']['cosine']['NDCG@10']:.4f}, p "
            f"{h['test']['paired_head_minus_cosine']['NDCG@10']['p_value']}) in "
            f"{h['train_seconds']} s"
        )
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def _cmd_eval_offline(args: argparse.Namespace) -> int:
    from promptrec.evaluation.offline import format_table, run_eval_offline, write_json

    if args.cold_start is not None and args.cold_start <= 0.0:
        raise _Usage(f"--cold-start {args.cold_start}: the cut quantile must be in (0, 1)")
    prep = _prepare(args)
    model, train = _configs(args)
    results = run_eval_offline(
        prep,
        model,
        train,
        args.checkpoint,
        args.cold_start,
        fusion=args.fusion,
        finetune=_finetune(args),
    )
    write_json(args.out, results)
    print(format_table(results))
    shot = results["zero_shot_prompt"]
    print(f"promptrec-zero-shot-prompt: template {shot['template']!r}, recent {shot['recent']}")
    if "cold_start" in results:
        cold = results["cold_start"]
        print(
            f"\ncold start (cut at quantile {cold['quantile']}: {cold['cold_items']} cold items, "
            f"{cold['events']} test events):"
        )
        print(format_table(cold))
    print(f"wrote {args.out}")
    if args.plot is not None:
        from promptrec.evaluation.plots import plot_offline

        plot_offline(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cmd_eval_stream(args: argparse.Namespace) -> int:
    from promptrec.evaluation.stream import run_stream_eval

    return int(run_stream_eval(args))


def _cmd_eval_ab(args: argparse.Namespace) -> int:
    from promptrec.evaluation.ab import run_ab_eval

    if not args.experiments.is_file():
        raise _Usage(f"--experiments {args.experiments}: no such file")
    return int(run_ab_eval(args))


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="data folder")
    p.add_argument("--format", choices=_FORMATS, required=True, help="data format")
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--model-dir", dest="model_dir", type=Path, help="local HF encoder folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.add_argument(
        "--strict", action="store_true", help="fail on the first bad data row (default: skip)"
    )


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=200)
    p.add_argument("--patience", type=positive_int, default=20, help="early-stopping epochs")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--dim", type=positive_int, default=64)
    p.add_argument("--max-len", dest="max_len", type=positive_int, default=50)
    p.add_argument("--layers", type=positive_int, default=2)
    p.add_argument("--heads", type=positive_int, default=1)
    p.add_argument("--dropout", type=fraction, default=0.3)
    p.add_argument("--id-dropout", dest="id_dropout", type=fraction, default=0.1)
    p.add_argument("--temperature", type=positive_float, default=0.1)
    p.add_argument(
        "--negatives",
        type=non_negative_int,
        default=DEFAULT_NEGATIVES,
        help="0: full softmax over all items; N: sampled softmax, N shared negatives per batch "
        f"+ the batch's positives, logQ-corrected (default {DEFAULT_NEGATIVES}, chosen on "
        "ML-100K validation)",
    )
    p.add_argument(
        "--sampler",
        choices=["uniform", "pop"],
        default="uniform",
        help="proposal of the sampled negatives (with --negatives N)",
    )
    p.add_argument("--no-ids", dest="no_ids", action="store_true", help="text-only items")
    p.add_argument(
        "--finetune-encoder",
        dest="finetune_encoder",
        choices=["none", "lora", "last-layers"],
        default="none",
        help="also train the text encoder: LoRA on (needs promptrec[finetune]) or unfreeze its "
        "top --finetune-layers layers; the tuned tensors go into the checkpoint (default none)",
    )
    p.add_argument(
        "--finetune-layers",
        dest="finetune_layers",
        type=positive_int,
        default=1,
        help="top transformer layers tuned (default 1)",
    )
    p.add_argument(
        "--finetune-lr",
        dest="finetune_lr",
        type=non_negative_float,
        default=0.0,
        help="encoder learning rate (0: 1e-3 for lora, 1e-4 for last-layers)",
    )
    p.add_argument(
        "--finetune-items",
        dest="finetune_items",
        type=non_negative_int,
        default=64,
        help="at most N of a batch's items are re-encoded with gradients per step, the rest "
        "use the vectors of the last refresh (0: all; default 64, what was measured on CPU)",
    )
    p.add_argument(
        "--user-profile",
        dest="user_profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fuse the encoded user prompt (profile) into the user vector (default: on)",
    )
    p.add_argument(
        "--fusion",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fuse the frozen text zero-shot score into the trained score, the weight chosen "
        "on validation (0 included) and recorded in the checkpoint (default: on)",
    )
    p.add_argument("--cache-dir", dest="cache_dir", type=Path, help="text-vector cache folder")
    p.add_argument("--no-cache", dest="no_cache", action="store_true")
    p.add_argument(
        "--threads", type=non_negative_int, default=0, help="torch CPU threads (0: default)"
    )


def register(sub: Any) -> None:
    """Add ``train`` and ``eval {offline,stream}`` to the ``promptrec`` subparsers."""
    text = "Train the recommender offline and write a safetensors checkpoint (+ JSON)."
    p = sub.add_parser("train", help=text, description=text)
    _add_common(p)
    _add_model(p)
    p.add_argument(
        "--train-head",
        dest="train_head",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train the scoring head over the retrieved candidates and ship it when it "
        "beats plain cosine on validation (default: on)",
    )
    p.add_argument(
        "--head-epochs",
        dest="head_epochs",
        type=positive_int,
        default=10,
        help="epochs per learning rate of the head training (default 10)",
    )
    p.add_argument(
        "--skip-users",
        dest="skip_users",
        type=non_negative_int,
        default=0,
        help="leave out the first N users (for a fair `eval stream --users N`)",
    )
    p.set_defaults(func=lambda a: _run("train", _cmd_train, a))

    text = "Evaluate recommendation quality (offline split or prequential stream replay)."
    ev = sub.add_parser("eval", help=text, description=text)
    evsub = ev.add_subparsers(dest="eval_command", metavar="MODE", required=True)

    text = "Leave-one-out, full ranking: promptrec, ablations, Pop and ItemKNN -> results.json."
    p = evsub.add_parser("offline", help=text, description=text)
    _add_common(p)
    _add_model(p)
    p.add_argument("--checkpoint", type=Path, help="evaluate this model instead of training one")
    p.add_argument(
        "--cold-start",
        dest="cold_start",
        type=fraction,
        nargs="?",
        const=0.7,
        default=None,
        metavar="QUANTILE",
        help="also run the strict cold-start protocol: global time cut at this quantile of the "
        "interaction times (default 0.7); trains one more model on the pre-cut data",
    )
    p.add_argument("--plot", type=Path, help=f"the table as a bar chart, PNG ({_PLOT_HELP})")
    p.set_defaults(func=lambda a: _run("eval offline", _cmd_eval_offline, a))

    text = "Prequential replay through the real broker and a worker -> results.json."
    p = evsub.add_parser("stream", help=text, description=text)
    _add_common(p)
    p.add_argument("--checkpoint", type=Path, help="model the worker loads at start")
    p.add_argument(
        "--limit", type=non_negative_int, default=0, help="replay only the first N events (0: all)"
    )
    p.add_argument(
        "--users", type=non_negative_int, default=0, help="only the first N users (0: all)"
    )
    p.add_argument("--windows", type=positive_int, default=10, help="time windows reported")
    p.add_argument("--plot", type=Path, help=f"HR@10 per time window, PNG ({_PLOT_HELP})")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="per-event wait, s")
    p.set_defaults(func=lambda a: _run("eval stream", _cmd_eval_stream, a))

    text = (
        "A/B replay: a worker serving the arms of --experiments, simulated clicks from the "
        "users' future -> per-arm CTR and HR@10 with 95% intervals."
    )
    p = evsub.add_parser("ab", help=text, description=text)
    _add_common(p)
    p.add_argument(
        "--experiments", type=Path, required=True, help="experiments file (two or more arms)"
    )
    p.add_argument(
        "--limit", type=non_negative_int, default=0, help="replay only the first N events (0: all)"
    )
    p.add_argument(
        "--users", type=non_negative_int, default=0, help="only the first N users (0: all)"
    )
    p.add_argument("--timeout", type=positive_float, default=60.0, help="per-event wait, s")
    p.set_defaults(func=lambda a: _run("eval ab", _cmd_eval_ab, a))
