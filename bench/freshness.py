"""``promptrec bench freshness``: new item's catalog event -> first recommendation holding it.

Method. Interactions flow in the background at ``--rate`` (default 1,000/s, a producer process).
Each trial ``j`` has a probe user whose whole history is one existing item ``X_j`` (sent and
acknowledged before the trials start). The trial publishes a new item: ``X_j``'s record with a new
id and " (new edition)" appended to its title, so its vector is nearly ``X_j``'s and it is among the
probe user's nearest candidates once it is indexed. From that moment the driver sends a
recommendation request for the probe user every ``--probe-ms`` (k = ``--k``, default 100 = the
worker's candidate count, so every retrieved candidate is returned whatever the head's order) and
stops at the first recommendation that contains the new item. Freshness = receipt of that
recommendation - publish time of the item event, both on the driver's clock; the resolution is
``--probe-ms``. The path measured is the real one: catalog reader -> catalog agent -> prompt ->
encoder -> index upsert, then the request through the recommend agent, queued behind the flowing
interactions. Background interactions' latencies during the trials are reported as well.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.common import percentiles, print_table, write_json

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``promptrec bench freshness``."""
    p.add_argument("--items", type=int, default=10_000, help="catalog size (default 10000)")
    p.add_argument("--users", type=int, default=1_000, help="users (default 1000)")
    p.add_argument("--no-profiles", dest="profiles", action="store_false")
    p.add_argument("--rate", type=float, default=1000.0, help="background interactions/s")
    p.add_argument("--trials", type=int, default=30, help="new items (default 30)")
    p.add_argument("--gap", type=float, default=0.5, help="seconds between trials")
    p.add_argument("--probe-ms", type=float, default=20.0, help="request interval of a probe")
    p.add_argument("--k", type=int, default=100, help="k of the probe requests (<= max_k)")
    p.add_argument("--trial-timeout", type=float, default=15.0, help="give up a trial after S s")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--model-dir", type=Path, default=None, help="default: all-MiniLM-L6-v2")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", type=Path, default=None, help="JSON result file")


def _send(producer: Any, topic: str, key: str, value: dict[str, Any]) -> None:
    producer.send(topic, key=key.encode(), value=json.dumps(value, separators=(",", ":")).encode())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; prints a table and writes ``args.out``."""
    from bench.cluster import Cluster
    from bench.data import BenchData

    data = BenchData(args.items, args.users, seed=args.seed)
    stride = max(1, args.items // max(args.trials, 1))
    bases = {j: rec for j, rec in enumerate(data.items()) if j % stride == 0}
    base_items = [bases[j * stride] for j in range(min(args.trials, args.items))]
    worker_args = ["--device", args.device]
    if args.model_dir is not None:
        worker_args += ["--model-dir", str(args.model_dir)]
    with Cluster(None, worker_args, partitions=args.partitions) as cluster:
        cluster.start_worker()
        cluster.wait_metric(
            lambda c: c.metrics().get(("promptrec_catalog_ready", ())) == 1.0, 300, "worker ready"
        )
        catalog = cluster.load_catalog(args.items, args.users, args.profiles, args.seed, 3600)
        print(f"catalog encoded in {catalog['encode_s']:.1f} s")
        names = cluster.names
        producer, consumer = cluster.producer(), cluster.recommendations_consumer()
        cluster.warm_up(producer, consumer, timeout=120)
        # Probe users: one interaction each with their base item, acknowledged by a rec.
        probes = [f"probe-{j}" for j in range(len(base_items))]
        for j, (user, base) in enumerate(zip(probes, base_items, strict=True)):
            _send(producer, names.interactions, user, {
                "event_id": f"probe-ev-{j}", "user_id": user, "item_id": base["item_id"],
                "type": "click", "ts": int(time.time() * 1000),
            })  # fmt: skip
        producer.flush()
        pending = set(probes)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                for r in records:
                    pending.discard((r.key or b"").decode())
        duration = len(base_items) * (args.gap + 2.0) + 20.0
        background = cluster.start_producer(
            "events", items=args.items, users=args.users, events=int(args.rate * duration),
            rate=args.rate, seed=args.seed, event_prefix="bg-",
        )  # fmt: skip
        time.sleep(3.0)  # steady state before the first trial
        fresh: list[float] = []
        missed = 0
        bg_latency: list[float] = []
        probe_set = {p.encode() for p in probes}
        cpu0 = cluster.cpu()
        t_start = time.time()
        for j, (user, base) in enumerate(zip(probes, base_items, strict=True)):
            new_id = f"fresh-{j}"
            item = {**base, "item_id": new_id, "title": f"{base['title']} (new edition)"}
            t0 = time.time()
            _send(producer, names.items, new_id, item)
            producer.flush()
            found = None
            next_probe = 0.0
            n = 0
            while found is None and time.time() - t0 < args.trial_timeout:
                cluster.check_alive()
                if time.time() >= next_probe:
                    n += 1
                    _send(producer, names.requests, user, {
                        "request_id": f"fr-{j}-{n}", "user_id": user, "k": args.k,
                        "ts": int(time.time() * 1000),
                    })  # fmt: skip
                    producer.flush()
                    next_probe = time.time() + args.probe_ms / 1000.0
                for records in consumer.poll(timeout_ms=5).values():
                    now = time.time()
                    for r in records:
                        if r.key not in probe_set:
                            rec = json.loads(r.value)
                            if rec.get("source") == "interaction":
                                bg_latency.append(now * 1000.0 - rec["source_ts"])
                            continue
                        if r.key != user.encode():
                            continue
                        rec = json.loads(r.value)
                        if any(i["item_id"] == new_id for i in rec["items"]):
                            found = now
                            break
            if found is None:
                missed += 1
                print(f"  trial {j}: new item not recommended within {args.trial_timeout} s")
            else:
                fresh.append(found - t0)
            time.sleep(args.gap)
        trials_s = time.time() - t_start
        cpu = cluster.cpu() - cpu0
        background.terminate()
        background.wait(timeout=30)
        producer.close()
        consumer.close()
    result: dict[str, Any] = {
        "config": {
            "items": args.items,
            "users": args.users,
            "rate": args.rate,
            "trials": args.trials,
            "probe_ms": args.probe_ms,
            "k": args.k,
            "device": args.device,
        },
        "method": "probe user with history [X]; new item = X with a new id and edited title; "
        "requests every probe_ms until a recommendation holds the new item",
        "catalog": catalog,
        "freshness_s": percentiles(fresh),
        "missed": missed,
        "background_latency_ms": percentiles(bg_latency),
        "background_recs_per_s": len(bg_latency) / trials_s if trials_s > 0 else 0.0,
        "worker_cpu_share": cpu / trials_s if trials_s > 0 else 0.0,
    }
    f, b = result["freshness_s"], result["background_latency_ms"]
    print_table(
        f"freshness (new item -> first recommendation; {args.rate:g} interactions/s flowing)",
        ["trials", "missed", "p50 s", "p99 s", "max s", "bg recs/s", "bg p50 ms", "bg p99 ms"],
        [[len(base_items), missed, f["p50"], f["p99"], f["max"],
          result["background_recs_per_s"], b["p50"], b["p99"]]],
    )  # fmt: skip
    write_json(args.out, "freshness", result)
    return result
