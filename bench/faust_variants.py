"""Events/s of the bare Faust agent (:mod:`bench.faust_floor`), one candidate cost at a time.

``python -m bench.faust_variants --events 20000 [--variant K=V,K=V ...] [--profile DIR]``
starts an embedded broker, produces ``--events`` interactions once, then runs the raw aiokafka
floor (:mod:`bench.floor`) and each variant of the bare Faust agent on those same events, each
in a fresh process with a fresh consumer group, and prints events/s and CPU ms/event per
variant. A variant is a comma list of ``bench.faust_floor`` options over the baseline
(``mode=take_events,sensors=on,decode=none,encode=minimal,uuid=off``): ``sensors=off``,
``mode=noack_take``, ``decode=pydantic,encode=stdlib,uuid=on`` (the worker's own codecs), ...
With ``--profile DIR`` each variant gets a py-spy flame graph from its first event on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import print_table, start_profiler, stop_profiler, write_json
from bench.data import BenchData, interaction_bytes
from bench.faust_floor import parser as floor_parser
from bench.floor import passthrough
from promptrec.broker.embedded import EmbeddedBroker
from promptrec.streams.clients import make_admin, make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

__all__ = ["DEFAULT_VARIANTS", "main", "parse_variant"]

DEFAULT_VARIANTS = [
    "",  # baseline
    "sensors=off",
    "drain=fast",
    "mode=take",
    "mode=noack_take",
    "uuid=on",
    "decode=json",
    "decode=orjson",
    "decode=msgspec",
    "decode=pydantic",
    "encode=stdlib",
    "encode=orjson",
    "encode=msgspec",
    "decode=pydantic,encode=stdlib,uuid=on",  # what the worker does per event besides recommending
    "decode=msgspec,encode=orjson,uuid=on",
    "decode=msgspec,encode=orjson,uuid=on,sensors=off",
    "decode=msgspec,encode=orjson,uuid=on,sensors=off,drain=fast",
    "table=20",
    "table=50",
]
_KNOBS = {"mode", "sensors", "decode", "encode", "uuid", "drain", "table"}


def parse_variant(text: str) -> dict[str, str]:
    """``"decode=orjson,uuid=on"`` -> options, checked against :mod:`bench.faust_floor`'s choices.

    Raises:
        argparse.ArgumentTypeError: Unknown knob or value, or not ``KEY=VALUE``.
    """
    choices = {a.dest: a.choices for a in floor_parser()._actions if a.dest in _KNOBS}
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in choices:
            raise argparse.ArgumentTypeError(f"want KNOB=VALUE with a knob of {sorted(_KNOBS)}, "
                                             f"got {part!r}")  # fmt: skip
        allowed = choices[key]
        if allowed is None:  # a number of entries (--table N)
            if not value.isdigit():
                raise argparse.ArgumentTypeError(f"{key}: want a count >= 0, got {value!r}")
        elif value not in allowed:
            raise argparse.ArgumentTypeError(f"{key}: {value!r} not one of {allowed}")
        out[key] = value
    return out


def _label(options: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "baseline"


def _produce(settings: StreamSettings, topic: str, n: int, seed: int) -> None:
    data = BenchData(2000, 2000, seed=seed)
    producer = make_producer(settings, acks=1, linger_ms=5, batch_size=262144)
    for i, (user, item, kind) in enumerate(data.interactions(n)):
        value = interaction_bytes(f"fv-{i}", user, item, kind, int(time.time() * 1000))
        producer.send(topic, key=user.encode(), value=value)
    producer.flush()
    producer.close()


def _topic(settings: StreamSettings, name: str) -> str:
    admin = make_admin(settings)
    try:
        spec = {"num_partitions": settings.partitions, "replication_factor": 1}
        admin.create_topics({name: spec}, timeout_ms=30_000, raise_errors=False)
    finally:
        admin.close()
    return name


def _run_variant(
    settings: StreamSettings, tmp: Path, options: dict[str, str], n: int, timeout: float,
    profile: Path | None, profile_suffix: str = ".svg", profile_idle: bool = False,
) -> dict[str, Any]:  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    result = tmp / f"{tag}.json"
    names = TopicNames.from_settings(settings)
    cmd = [
        sys.executable, "-m", "bench.faust_floor", "--broker", settings.broker,
        "--topic-prefix", settings.topic_prefix, "--app-id", f"ff-{tag}",
        "--state-dir", str(tmp / tag), "--input", names.interactions,
        "--output", _topic(settings, f"{settings.topic_prefix}out-{tag}"),
        "--expect", str(n), "--result", str(result),
    ]  # fmt: skip
    for key, value in options.items():
        cmd += [f"--{key}", value]
    log = open(tmp / f"{tag}.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PROMPTREC_PARTITIONS": str(settings.partitions)}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    profiler = None
    started = result.with_suffix(".started")
    deadline = time.monotonic() + timeout
    try:
        while not result.exists():
            if proc.poll() is not None and not result.exists():
                tail = (tmp / f"{tag}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"faust_floor {_label(options)} exited {proc.returncode}:\n{tail}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"faust_floor {_label(options)}: no result in {timeout:.0f} s")
            if profile is not None and profiler is None and started.exists():
                name = f"faust-{_label(options)}{profile_suffix}"
                profiler = start_profiler(proc.pid, profile / name, idle=profile_idle)
            time.sleep(0.05)
    finally:
        stop_profiler(profiler)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    doc: dict[str, Any] = json.loads(result.read_text())
    return doc


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Produce once, then the raw floor and every variant; prints a table, writes ``--out``."""
    import asyncio

    variants = args.variant or [parse_variant(v) for v in DEFAULT_VARIANTS]
    tmp = Path(tempfile.mkdtemp(prefix="promptrec-faust-floor-"))
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    broker.start()
    rows: list[dict[str, Any]] = []
    try:
        settings = StreamSettings(
            broker=broker.url, topic_prefix=f"f{uuid.uuid4().hex[:8]}.", state_dir=tmp,
            partitions=args.partitions,
        )  # fmt: skip
        ensure_topics(settings)
        topic = TopicNames.from_settings(settings).interactions
        _produce(settings, topic, args.events, args.seed)
        start = {p: 0 for p in range(args.partitions)}
        for _ in range(args.repeat):
            out = _topic(settings, f"{settings.topic_prefix}raw-{uuid.uuid4().hex[:8]}")
            job = passthrough(settings, topic, out, out, start, args.events, settings.batch_size)
            raw = asyncio.run(job)
            rows.append({"variant": "raw aiokafka floor", **raw})
            print(f"raw aiokafka floor: {raw['events_per_s']:,.0f} events/s")
            for options in variants:
                doc = _run_variant(
                    settings, tmp, options, args.events, args.timeout, args.profile,
                    ".svg" if args.profile_format == "svg" else ".txt", args.profile_idle,
                )  # fmt: skip
                rows.append({"variant": _label(options), **doc})
                print(f"{_label(options)}: {doc['events_per_s']:,.0f} events/s, "
                      f"{doc['cpu_ms_per_event']:.3f} CPU ms/event")  # fmt: skip
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"config": {"events": args.events, "partitions": args.partitions,
                         "repeat": args.repeat}, "runs": rows}  # fmt: skip
    _print(rows)
    write_json(args.out, "faust-floor", result)
    return result


def _print(rows: list[dict[str, Any]]) -> None:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(r)
    # CPU per event is the figure to compare on a shared machine: events/s also measures how
    # much CPU the other processes left; the least CPU of the rounds is the least disturbed.
    base_runs = by.get("baseline", [])
    base = min(r["cpu_ms_per_event"] for r in base_runs) if base_runs else 0.0
    table = []
    for name, runs in by.items():
        eps = sorted(r["events_per_s"] for r in runs)
        cpu = sorted(r["cpu_ms_per_event"] for r in runs)
        batch = sum(r["mean_batch"] for r in runs) / len(runs)
        table.append([name, len(runs), cpu[0], sum(cpu) / len(cpu),
                      cpu[0] / base if base else float("nan"), eps[-1], eps[0], batch,
                      sum(r.get("bad", 0) for r in runs)])  # fmt: skip
    print_table(
        "bare Faust agent (take_events -> batching aiokafka producer), by variant",
        ["variant", "runs", "cpu ms/ev min", "mean", "x baseline", "events/s max", "min",
         "batch", "bad"],
        table,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.faust_variants")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--repeat", type=int, default=1, help="rounds over all variants")
    p.add_argument("--variant", type=parse_variant, action="append", default=[],
                   help="KNOB=VALUE,... over the baseline (repeatable; default: all)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=300.0, help="per variant, seconds")
    p.add_argument("--profile", type=Path, default=None, help="folder for py-spy flame graphs")
    p.add_argument("--profile-format", choices=["svg", "raw"], default="svg",
                   help="flame graph, or collapsed stacks (text)")  # fmt: skip
    p.add_argument("--profile-idle", action="store_true", help="py-spy --idle: waits too")
    p.add_argument("--out", type=Path, default=None, help="JSON result file")
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
