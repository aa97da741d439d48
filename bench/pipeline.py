"""``promptrec bench pipeline``: sustained events/s, end-to-end latency, worker RSS and CPU/event.

Setup: embedded broker + one worker process; a producer process publishes the generated catalog
(items and user profiles; the encode time is reported on its own), then, for each ``--rate``
(``MAX`` or events/s), ``--events`` interactions stamped with their send time. The driver
consumes the recommendations topic and counts recommendations whose source is one of those
interactions; latency = receipt time - source ``ts``. Worker CPU is the utime+stime delta of
``/proc/<pid>/stat`` over the run, RSS is VmRSS (final) and VmHWM (peak).

Each rate is a fresh stream: it starts only once the worker has been idle for ``--settle`` s
(no backlog of the previous rate), and the steady latency leaves out the first ``--ramp`` s of
sends. With ``--floor`` (default) every MAX run (or the first run, without one) is followed by
:mod:`bench.floor` on the very same interactions (the run's offset range of that topic, already
produced): a raw aiokafka consume -> produce passthrough with the worker's batch and producer
settings. ``ratio_to_floor`` = the worker's events/s at MAX over the floor's, measured minutes
apart on the same broker, so machine noise affects both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.burst import Burst, burst_summary
from bench.common import cpu_seconds, percentiles, start_profiler, stop_profiler, write_json
from bench.floor import end_offsets, run_floor
from bench.pipeline_report import print_result, stage_diff, stage_totals

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
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="paced rates send rate*S events instead of --events")  # fmt: skip
    p.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the raw passthrough floor on the MAX run's events")  # fmt: skip
    p.add_argument("--settle", type=float, default=2.0, metavar="S",
                   help="before each rate, wait until the worker was idle S s")  # fmt: skip
    p.add_argument("--ramp", type=float, default=1.0, metavar="S",
                   help="steady latency: without events sent in a stream's first S s")  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=30.0,
                   help="stop waiting after S s without a recommendation")  # fmt: skip
    p.add_argument("--ready-timeout", type=float, default=1800.0,
                   help="max seconds for model load + catalog encode")  # fmt: skip
    p.add_argument("--burst-items", type=int, default=0, metavar="N",
                   help="paced rates: N new items published into the stream")  # fmt: skip
    p.add_argument("--burst-after", type=float, default=5.0, metavar="S",
                   help="seconds into the stream the burst starts (default 5)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def _interactions_done(cluster: Cluster) -> float:
    """Interactions and requests the worker has finished (any outcome), from its metrics."""
    total = 0.0
    for (name, labels), value in cluster.metrics().items():
        if name == "promptrec_events_total" and dict(labels).get("topic") in (
            "interactions",
            "recommendation-requests",
        ):
            total += value
    return total


def wait_idle(cluster: Cluster, settle: float, timeout: float = 600.0) -> float:
    """Wait until the worker finished no event for ``settle`` s; returns seconds waited."""
    t0 = last_change = time.monotonic()
    last = _interactions_done(cluster)
    while time.monotonic() - last_change < settle:
        if time.monotonic() - t0 > timeout:
            print(f"  worker still busy after {timeout:.0f} s; starting anyway")
            break
        cluster.check_alive()
        time.sleep(min(0.2, settle))
        now = _interactions_done(cluster)
        if now != last:
            last, last_change = now, time.monotonic()
    return time.monotonic() - t0


def events_for(args: argparse.Namespace, rate: float) -> int:
    """Interactions of one run: ``--events``, or ``rate * --duration`` for a paced rate."""
    if rate > 0 and args.duration:
        return max(1, int(rate * args.duration))
    return int(args.events)


def run_events(
    cluster: Cluster,
    args: argparse.Namespace,
    rate: float,
    tag: str,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Publish interactions at ``rate`` and collect their recommendations."""
    n_events = events_for(args, rate)
    consumer = cluster.recommendations_consumer(from_end=True)
    prefix = f"{tag}-"
    offsets0 = end_offsets(cluster._s, cluster.names.interactions, cluster.partitions)
    stages0 = stage_totals(cluster)
    cpu0, bcpu0 = cluster.cpu(), cpu_seconds(cluster.broker.pid or 0)
    profiler = start_profiler(cluster.pid, profile) if profile else None
    producer = cluster.start_producer(
        "events", items=args.items, users=args.users, events=n_events, rate=rate,
        seed=args.seed, event_prefix=prefix,
    )  # fmt: skip
    # (source ts in epoch ms, latency ms) per recommendation
    samples: list[tuple[int, float]] = []
    seen: set[str] = set()
    duplicates = 0
    first_rec = last_rec = 0.0
    rss_peak = 0
    idle_since = time.monotonic()
    next_rss = 0.0
    sent: dict[str, Any] | None = None
    burst = None
    if rate > 0 and args.burst_items > 0:
        burst = Burst(cluster, args.burst_items, args.burst_after, args.seed, f"{tag}-new-",
                      args.ready_timeout)  # fmt: skip
        burst.start()
    try:
        while len(seen) < n_events:
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
                    samples.append((rec["source_ts"], now * 1000.0 - rec["source_ts"]))
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
        if burst is not None:
            burst.finish()
        stop_profiler(profiler)
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
    first_send = float(sent.get("first_send", first_rec))
    span = max(last_rec - first_send, 1e-9)
    throughput = received / span if received else 0.0
    send_rate = float(sent.get("send_rate", 0.0))
    ramp_end_ms = (first_send + args.ramp) * 1000.0
    return {
        "rate": "MAX" if rate == 0 else rate,
        "events_sent": int(sent.get("sent", 0)),
        "producer_send_rate": send_rate,
        "producer_behind_s": float(sent.get("max_behind_schedule_s", 0.0)),
        "recommendations": received,
        "duplicate_recommendations": duplicates,
        "missing": int(sent.get("sent", 0)) - received,
        "throughput_eps": throughput,
        # Paced: the worker answered at the send rate (an overloaded one falls behind, and its
        # latency then grows with the stream's length). MAX: not applicable.
        "keeps_up": None if rate == 0 else bool(received and throughput >= 0.9 * send_rate),
        "latency_ms": percentiles([lat for _, lat in samples]),
        "steady_latency_ms": percentiles([lat for ts, lat in samples if ts >= ramp_end_ms]),
        "worker_cpu_s": cpu,
        "worker_cpu_ms_per_event": 1000.0 * cpu / received if received else float("nan"),
        "broker_cpu_ms_per_event": 1000.0 * bcpu / received if received else float("nan"),
        "worker_rss_mb": {"final": rss_now / MB, "peak": max(rss_hwm, rss_peak) / MB},
        "worker_stages": stage_diff(stage_totals(cluster), stages0),
        "burst": burst_summary(burst, samples) if burst is not None else None,
        # Where the floor starts reading this run's events (read before they were produced).
        "interactions_start": offsets0,
        "event_prefix": prefix,
    }


def _with_floor(cluster: Cluster, run: dict[str, Any]) -> None:
    """Run the floor on the run's interactions; adds ``floor`` and ``ratio_to_floor``."""
    start = {int(p): o for p, o in run["interactions_start"].items()}
    n = run["events_sent"]
    print(f"  floor: raw passthrough of the same {n} events")
    marker = f'"event_id":"{run["event_prefix"]}'
    floor = run_floor(cluster, start, n, marker, timeout=300 + n / 100)
    run["floor"] = floor
    eps = floor["events_per_s"]
    run["ratio_to_floor"] = run["throughput_eps"] / eps if run["rate"] == "MAX" and eps else None
    print(f"  floor {eps:,.0f} events/s vs worker {run['throughput_eps']:,.0f}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints tables and writes ``args.out``."""
    from bench.cluster import Cluster

    env = _env_pairs(args.worker_env)
    worker_args = ["--device", args.device]
    if args.model_dir is not None:
        worker_args += ["--model-dir", str(args.model_dir)]
    floor_at = {n for n, rate in enumerate(args.rate) if rate == 0} or {0}
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
            wait_idle(cluster, args.settle)
            print(f"run {n + 1}/{len(args.rate)}: {events_for(args, rate)} interactions at {label}")
            prof = args.profile if n == 0 else None
            runs.append(run_events(cluster, args, rate, f"r{n}", prof))
            if args.floor and n in floor_at:
                _with_floor(cluster, runs[-1])
        final_rss = cluster.rss()
    floors = [r for r in runs if r.get("floor")]
    ratios = [r["ratio_to_floor"] for r in floors if r.get("ratio_to_floor") is not None]
    result = {
        "config": {
            "items": args.items,
            "users": args.users,
            "events": args.events,
            "duration_s": args.duration,
            "profiles": args.profiles,
            "partitions": args.partitions,
            "device": args.device,
            "model_dir": str(args.model_dir) if args.model_dir else "default",
            "worker_env": env,
            "floor": args.floor,
            "settle_s": args.settle,
            "ramp_s": args.ramp,
            "burst_items": args.burst_items,
            "burst_after_s": args.burst_after,
        },
        "worker_startup_s": startup,
        "warm_up_s": warm,
        "catalog": catalog,
        "floor_events_per_s": floors[0]["floor"]["events_per_s"] if floors else None,
        "ratio_to_floor": ratios[0] if ratios else None,
        "runs": runs,
        "worker_rss_mb_end": {"final": final_rss[0] / MB, "peak": final_rss[1] / MB},
    }
    print_result(result)
    write_json(args.out, "pipeline", result)
    return result
