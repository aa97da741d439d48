"""``promptrec bench pipeline``: sustained events/s, end-to-end latency, worker RSS and CPU/event.

Setup: embedded broker + one worker process; a producer process publishes the generated catalog
(items and user profiles; the encode time is reported on its own), then, for each ``--rate``
(``MAX`` or events/s), ``--events`` interactions stamped with their send time. The driver
consumes the recommendations topic and counts recommendations whose source is one of those
interactions; latency = receipt time - source ``ts``. Worker CPU is the utime+stime delta of
``/proc/<pid>/stat`` over the run, RSS is VmRSS (final) and VmHWM (peak).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import cpu_seconds, percentiles, print_table, write_json

if TYPE_CHECKING:
    from bench.cluster import Cluster

__all__ = ["add_arguments", "parse_rates", "run", "run_events"]

MB = 2**20


def parse_rates(text: str) -> list[float]:
    """``"MAX,1000"`` -> ``[0.0, 1000.0]`` (0 = as fast as possible)."""
    rates = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.upper() == "MAX":
            rates.append(0.0)
            continue
        value = float(part)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"rate must be MAX or > 0, got {part!r}")
        rates.append(value)
    if not rates:
        raise argparse.ArgumentTypeError("no rate given")
    return rates


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--worker-env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``promptrec bench pipeline``."""
    p.add_argument("--items", type=int, default=10_000, help="catalog size (default 10000)")
    p.add_argument("--users", type=int, default=10_000, help="users (default 10000)")
    p.add_argument("--events", type=int, default=100_000, help="interactions per rate")
    p.add_argument(
        "--rate", type=parse_rates, default=[0.0], help="MAX or events/s, comma list (MAX,1000)"
    )
    p.add_argument("--no-profiles", dest="profiles", action="store_false",
                   help="do not publish user profiles (history only)")  # fmt: skip
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra worker environment, e.g. PROMPTREC_BATCH_SIZE=256")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu",
                   help="worker encoder device (default cpu)")  # fmt: skip
    p.add_argument("--model-dir", type=Path, default=None,
                   help="worker encoder model folder (default: all-MiniLM-L6-v2)")  # fmt: skip
    p.add_argument("--profile", type=Path, default=None,
                   help="py-spy flame graph (SVG) of the worker during the first rate")  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=30.0,
                   help="stop waiting after S s without a recommendation")  # fmt: skip
    p.add_argument("--ready-timeout", type=float, default=1800.0,
                   help="max seconds for model load + catalog encode")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def _start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    # The venv's bin folder first: it is not on PATH when promptrec is run as .venv/bin/promptrec.
    exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if exe is None:
        print("py-spy not found (pip install py-spy); no profile")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # .svg: flame graph; anything else: collapsed stacks ("raw"), one line per stack and count.
    fmt = "flamegraph" if path.suffix == ".svg" else "raw"
    cmd = [exe, "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--threads"]
    cmd += ["--format", fmt, "-o", str(path)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes the file on SIGINT
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGINT):
        print(f"py-spy exited {proc.returncode}: {err.decode()[-500:]}")


def _stage_totals(cluster: Cluster) -> dict[str, Any]:
    """Worker-side stage seconds and batch sizes from its Prometheus endpoint."""
    out: dict[str, Any] = {"stage_seconds": {}, "batches": {}}
    for (name, labels), value in cluster.metrics().items():
        lab = dict(labels)
        key = lab.get("stage") or lab.get("agent") or "?"
        if name == "promptrec_stage_seconds_sum":
            out["stage_seconds"][key] = value
        elif name == "promptrec_batch_size_sum":
            out["batches"].setdefault(key, {})["events"] = value
        elif name == "promptrec_batch_size_count":
            out["batches"].setdefault(key, {})["batches"] = value
    return out


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    stages = {k: v - before["stage_seconds"].get(k, 0.0) for k, v in after["stage_seconds"].items()}
    batches = {}
    for k, v in after["batches"].items():
        b = before["batches"].get(k, {})
        n = v.get("batches", 0) - b.get("batches", 0)
        e = v.get("events", 0) - b.get("events", 0)
        batches[k] = {"batches": n, "events": e, "mean_size": e / n if n else 0.0}
    return {"stage_seconds": stages, "batches": batches}


def run_events(
    cluster: Cluster,
    args: argparse.Namespace,
    rate: float,
    tag: str,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Publish ``args.events`` interactions at ``rate`` and collect their recommendations."""
    consumer = cluster.recommendations_consumer(from_end=True)
    prefix = f"{tag}-"
    stages0 = _stage_totals(cluster)
    cpu0, bcpu0 = cluster.cpu(), cpu_seconds(cluster.broker.pid or 0)
    profiler = _start_profiler(cluster.pid, profile) if profile else None
    producer = cluster.start_producer(
        "events", items=args.items, users=args.users, events=args.events, rate=rate,
        seed=args.seed, event_prefix=prefix,
    )  # fmt: skip
    latencies: list[float] = []
    seen: set[str] = set()
    duplicates = 0
    first_rec = last_rec = 0.0
    rss_peak = 0
    idle_since = time.monotonic()
    next_rss = 0.0
    sent: dict[str, Any] | None = None
    try:
        while len(seen) < args.events:
            cluster.check_alive()
            polled = consumer.poll(timeout_ms=100)
            now = time.time()
            for records in polled.values():
                for record in records:
                    rec = json.loads(record.value)
                    source_id = rec.get("source_event_id", "")
                    if rec.get("source") != "interaction" or not source_id.startswith(prefix):
                        continue
                    if source_id in seen:
                        duplicates += 1
                        continue
                    seen.add(source_id)
                    latencies.append(now * 1000.0 - rec["source_ts"])
                    first_rec = first_rec or now
                    last_rec = now
                    idle_since = time.monotonic()
            if now >= next_rss:
                rss_peak = max(rss_peak, cluster.rss()[0])
                next_rss = now + 0.5
            if sent is None and producer.poll() is not None:
                out, err = producer.communicate()
                if producer.returncode != 0:
                    raise RuntimeError(f"producer failed:\n{err.decode()[-3000:]}")
                sent = json.loads(out.decode().strip().splitlines()[-1])
                idle_since = time.monotonic()
            if sent is not None and time.monotonic() - idle_since > args.idle_timeout:
                print(f"  no recommendation for {args.idle_timeout:.0f} s; stopping this run")
                break
    finally:
        _stop_profiler(profiler)
        if producer.poll() is None:
            producer.terminate()
        consumer.close()
    if sent is None:
        out, _ = producer.communicate(timeout=60)
        sent = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    cpu = cluster.cpu() - cpu0
    bcpu = cpu_seconds(cluster.broker.pid or 0) - bcpu0
    rss_now, rss_hwm = cluster.rss()
    received = len(seen)
    span = max(last_rec - float(sent.get("first_send", first_rec)), 1e-9)
    return {
        "rate": "MAX" if rate == 0 else rate,
        "events_sent": int(sent.get("sent", 0)),
        "producer_send_rate": float(sent.get("send_rate", 0.0)),
        "recommendations": received,
        "duplicate_recommendations": duplicates,
        "missing": int(sent.get("sent", 0)) - received,
        "throughput_eps": received / span if received else 0.0,
        "latency_ms": percentiles(latencies),
        "worker_cpu_s": cpu,
        "worker_cpu_ms_per_event": 1000.0 * cpu / received if received else float("nan"),
        "broker_cpu_ms_per_event": 1000.0 * bcpu / received if received else float("nan"),
        "worker_rss_mb": {"final": rss_now / MB, "peak": max(rss_hwm, rss_peak) / MB},
        "worker_stages": _diff(_stage_totals(cluster), stages0),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints tables and writes ``args.out``."""
    from bench.cluster import Cluster

    env = _env_pairs(args.worker_env)
    worker_args = ["--device", args.device]
    if args.model_dir is not None:
        worker_args += ["--model-dir", str(args.model_dir)]
    with Cluster(env, worker_args, partitions=args.partitions) as cluster:
        t0 = time.perf_counter()
        cluster.start_worker()
        cluster.wait_metric(
            lambda c: c.metrics().get(("promptrec_catalog_ready", ())) == 1.0, 300, "worker ready"
        )
        startup = time.perf_counter() - t0
        print(f"worker ready in {startup:.1f} s; publishing {args.items} items, "
              f"{args.users if args.profiles else 0} profiles")  # fmt: skip
        catalog = cluster.load_catalog(
            args.items, args.users, args.profiles, args.seed, args.ready_timeout
        )
        print(f"catalog encoded in {catalog['encode_s']:.1f} s "
              f"({catalog['texts_per_s']:.0f} texts/s)")  # fmt: skip
        producer, consumer = cluster.producer(), cluster.recommendations_consumer()
        warm = cluster.warm_up(producer, consumer, timeout=120)
        producer.close()
        consumer.close()
        runs = []
        for n, rate in enumerate(args.rate):
            label = "MAX" if rate == 0 else f"{rate:g}/s"
            print(f"run {n + 1}/{len(args.rate)}: {args.events} interactions at {label}")
            prof = args.profile if n == 0 else None
            runs.append(run_events(cluster, args, rate, f"r{n}", prof))
        final_rss = cluster.rss()
    result = {
        "config": {
            "items": args.items,
            "users": args.users,
            "events": args.events,
            "profiles": args.profiles,
            "partitions": args.partitions,
            "device": args.device,
            "model_dir": str(args.model_dir) if args.model_dir else "default",
            "worker_env": env,
        },
        "worker_startup_s": startup,
        "warm_up_s": warm,
        "catalog": catalog,
        "runs": runs,
        "worker_rss_mb_end": {"final": final_rss[0] / MB, "peak": final_rss[1] / MB},
    }
    _print(result)
    write_json(args.out, "pipeline", result)
    return result


def _print(result: dict[str, Any]) -> None:
    c = result["catalog"]
    print_table(
        "catalog (items + user profiles, prompt-wrapped, encoded once)",
        ["items", "profiles", "encode s", "texts/s"],
        [[c["items"], c["user_profiles"], c["encode_s"], c["texts_per_s"]]],
    )
    rows = []
    for r in result["runs"]:
        lat = r["latency_ms"]
        rows.append([
            str(r["rate"]), r["events_sent"], r["recommendations"], r["throughput_eps"],
            lat["p50"], lat["p95"], lat["p99"], lat["max"], r["worker_cpu_ms_per_event"],
            r["worker_rss_mb"]["peak"], r["worker_rss_mb"]["final"],
        ])  # fmt: skip
    print_table(
        "pipeline (one recommendation per interaction)",
        ["rate", "sent", "recs", "events/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
         "cpu ms/ev", "rss peak MB", "rss MB"],
        rows,
    )  # fmt: skip
    for r in result["runs"]:
        stages = r["worker_stages"]
        n = max(r["recommendations"], 1)
        parts = ", ".join(
            f"{k} {1e6 * v / n:.0f}" for k, v in sorted(stages["stage_seconds"].items()) if v
        )
        mean = stages["batches"].get("recommend", {}).get("mean_size", 0.0)
        print(f"  rate {r['rate']}: worker stage us/event: {parts}; mean batch {mean:.1f}")
