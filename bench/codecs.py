"""Per-event CPU of the recommend path's codecs, in process: decode, encode, ids.

``python -m bench.codecs [--events 20000] [--repeat 7] [--out FILE]`` times, per event, each
decoder of :mod:`bench.faust_floor` on generated interaction values (the worker's
``decode_interaction`` = stdlib ``json`` + checks + a pydantic model), each encoder of a top-10
recommendation (the worker's ``recommendation_json`` = stdlib ``json``), and ``uuid4().hex``
against cheaper ids. The best of ``--repeat`` rounds is reported: on a shared machine the
minimum is the cost, the rest is other processes. These are CPU costs without any I/O, so unlike
events/s they are comparable across runs on a loaded machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import print_table, write_json
from bench.data import BenchData, interaction_bytes
from bench.faust_floor import DECODERS, ENCODERS, make_decoder, make_encoder

__all__ = ["main", "time_per_call"]


def time_per_call(fn: Callable[[Any], Any], inputs: Sequence[Any], repeat: int) -> float:
    """Best-of-``repeat`` microseconds per ``fn(x)`` over ``inputs``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / len(inputs)


def _ids() -> dict[str, Callable[[Any], Any]]:
    counter = itertools.count()
    pid = os.getpid()
    return {
        "uuid4().hex": lambda _: uuid.uuid4().hex,
        "os.urandom(16).hex()": lambda _: os.urandom(16).hex(),
        # Unique per process start + sequence: what a worker id plus a counter gives.
        "f'{pid}-{n}' counter": lambda _: f"{pid}-{next(counter)}",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every codec; prints a table and writes ``args.out``."""
    data = BenchData(2000, 2000, seed=args.seed)
    now = int(time.time() * 1000)
    values = [
        interaction_bytes(f"r0-{n}", u, i, k, now)
        for n, (u, i, k) in enumerate(data.interactions(args.events))
    ]
    rows: list[dict[str, Any]] = []
    for name in DECODERS:
        if name == "none":
            continue
        us = time_per_call(make_decoder(name), values, args.repeat)
        rows.append({"kind": "decode", "codec": name, "us_per_event": us})
    ids = [(f"rec-{n}", f"r0-{n}", now) for n in range(args.events)]
    for name in ENCODERS:
        enc = make_encoder(name)
        us = time_per_call(lambda t, enc=enc: enc(*t), ids, args.repeat)  # type: ignore[misc]
        rows.append({"kind": "encode", "codec": name, "us_per_event": us})
    for name, fn in _ids().items():
        rows.append(
            {"kind": "id", "codec": name, "us_per_event": time_per_call(fn, ids, args.repeat)}
        )
    base = {
        r["kind"]: r["us_per_event"]
        for r in rows
        if r["codec"] in ("pydantic", "stdlib", "uuid4().hex")
    }
    for r in rows:
        r["x_worker"] = r["us_per_event"] / base[r["kind"]] if base.get(r["kind"]) else None
    print_table(
        f"codec CPU per event (best of {args.repeat} x {args.events}); the worker uses "
        "pydantic / stdlib / uuid4().hex",
        ["kind", "codec", "us/event", "x worker's"],
        [[r["kind"], r["codec"], r["us_per_event"], r["x_worker"]] for r in rows],
    )
    result = {"config": {"events": args.events, "repeat": args.repeat}, "rows": rows}
    write_json(args.out, "codecs", result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.codecs")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, default=None)
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
