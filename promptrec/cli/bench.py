"""``promptrec bench ...`` subcommands (registered by :mod:`promptrec.cli.main`).

The benchmarks live in the ``bench/`` folder of the source checkout, beside ``promptrec/``; it is
not installed as a package. Each module's arguments are read when the parser is built and its
heavy imports happen when the subcommand runs, so ``promptrec --help`` stays fast. Without a
checkout (an installed wheel) ``promptrec bench`` says so instead of failing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

# subcommand -> (module in the ``bench`` package, help text)
_BENCHES: dict[str, tuple[str, str]] = {
    "pipeline": (
        "bench.pipeline",
        "Broker + worker + producer process: events/s, e2e latency, worker RSS and CPU/event.",
    ),
    "encoder": ("bench.encoder", "Prompt-wrapped item texts/s of the encoder, by batch size."),
    "index": ("bench.index", "Upsert/search throughput, latency and recall@K per index type."),
    "freshness": (
        "bench.freshness",
        "Seconds from a new item's catalog event to its first recommendation.",
    ),
    "state": ("bench.state", "Bytes of worker state per user history and per indexed item."),
    "features": (
        "bench.features",
        "Cost of request filters in the search, of explain=true, and memory of one more arm.",
    ),
    "recommend": (
        "bench.recommend",
        "The recommender's per-batch path in process: microseconds per event by stage.",
    ),
    "finetune": (
        "bench.finetune",
        "Encoder fine-tuning (none/lora/last-layers): warm and cold-start quality, s/epoch.",
    ),
}


def _find_bench() -> bool:
    """Makes the checkout's ``bench`` folder importable; False when there is none."""
    if importlib.util.find_spec("bench") is not None:
        return True
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "bench" / "pipeline.py").is_file():
        sys.path.insert(0, str(checkout))
        return True
    return False


def _no_checkout(args: argparse.Namespace) -> int:
    print(
        "promptrec bench: error: the benchmarks live in bench/ of a source checkout "
        "(git clone the project and run `make install`); this install has none",
        file=sys.stderr,
    )
    return 2


def _runner(module: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        importlib.import_module(module).run(args)
        return 0

    return run


def register(sub: Any) -> None:
    """Add the ``bench`` command group to the ``promptrec`` parser's subparsers."""
    text = "Benchmarks: each prints a table and writes JSON (--out)."
    parser = sub.add_parser("bench", help=text, description=text)
    if not _find_bench():
        parser.set_defaults(func=_no_checkout)
        return
    benches = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in _BENCHES.items():
        p = benches.add_parser(name, help=help_text, description=help_text)
        # Bench modules import only argparse-level code at the top; heavy imports are in run().
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(func=_runner(module))
