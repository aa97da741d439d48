"""``promptrec bench ...`` subcommands (registered by :mod:`promptrec.streams.cli`).

The benchmarks live in the top-level ``bench`` package; each module is imported only when its
subcommand runs, so ``promptrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
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
}


def _runner(module: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        importlib.import_module(module).run(args)
        return 0

    return run


def register(sub: Any) -> None:
    """Add the ``bench`` command group to the ``promptrec`` parser's subparsers."""
    text = "Benchmarks: each prints a table and writes JSON (--out)."
    parser = sub.add_parser("bench", help=text, description=text)
    benches = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in _BENCHES.items():
        p = benches.add_parser(name, help=help_text, description=help_text)
        # Bench modules import only argparse-level code at the top; heavy imports are in run().
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(func=_runner(module))
