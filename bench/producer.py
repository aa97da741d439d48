"""The benchmarks' producer, run as its own process: ``python -m bench.producer PHASE ...``.

``catalog`` publishes the generated items (and user profiles) as fast as possible; ``events``
publishes interactions at a fixed rate or as fast as possible, each stamped with its send time
(``ts``, epoch ms), which is where the end-to-end latency is measured from. A separate process
keeps the producer's CPU use out of the driver that consumes recommendations; it prints one JSON
summary line on stdout when done.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from kafka import KafkaProducer

from bench.data import BenchData, interaction_bytes
from promptrec.streams.clients import make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["main"]


def _producer(settings: StreamSettings, paced: bool) -> KafkaProducer:
    # Paced runs linger 5 ms, Kafka's default since 4.0 (KIP-1030): at 1,000 events/s a
    # producer with linger 0 sends one request per record, which costs the embedded broker
    # 1.3 ms of CPU each (measured) and is not how clients publish at that rate. MAX runs
    # batch bigger for throughput.
    return make_producer(
        settings,
        acks=1,
        linger_ms=5,
        batch_size=16384 if paced else 262144,
        max_in_flight_requests_per_connection=5,
    )


def _catalog(args: argparse.Namespace, settings: StreamSettings) -> dict[str, float]:
    names = TopicNames.from_settings(settings)
    data = BenchData(args.items, args.users, seed=args.seed)
    producer = _producer(settings, paced=False)
    t0 = time.perf_counter()
    n_items = n_users = 0
    for item in data.items():
        if args.item_prefix:  # a burst of new items: new ids, an edited title (new texts)
            item["item_id"] = f"{args.item_prefix}{item['item_id']}"
            item["title"] = f"{item['title']} (new edition)"
        raw = json.dumps(item, separators=(",", ":")).encode()
        producer.send(names.items, key=item["item_id"].encode(), value=raw)
        n_items += 1
    if args.profiles:
        for user in data.users():
            raw = json.dumps(user, separators=(",", ":")).encode()
            producer.send(names.users, key=user["user_id"].encode(), value=raw)
            n_users += 1
    producer.flush()
    producer.close()
    return {"items": n_items, "users": n_users, "seconds": time.perf_counter() - t0}


def _events(args: argparse.Namespace, settings: StreamSettings) -> dict[str, float]:
    names = TopicNames.from_settings(settings)
    data = BenchData(args.items, args.users, seed=args.seed)
    # Generated up front, so the timed loop only stamps, serialises and sends.
    triples = list(data.interactions(args.events))
    paced = args.rate > 0
    producer = _producer(settings, paced)
    topic = names.interactions
    prefix = args.event_prefix
    t0 = time.time()
    first = last = 0.0
    behind_max = 0.0
    for n, (user, item, kind) in enumerate(triples):
        if paced:
            due = t0 + n / args.rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            else:
                behind_max = max(behind_max, -wait)
        now = time.time()
        value = interaction_bytes(f"{prefix}{n}", user, item, kind, int(now * 1000))
        producer.send(topic, key=user.encode(), value=value)
        if n == 0:
            first = now
        last = now
    producer.flush()
    producer.close()
    span = max(last - first, 1e-9)
    return {
        "sent": len(triples),
        "first_send": first,
        "last_send": last,
        "send_rate": len(triples) / span if len(triples) > 1 else 0.0,
        "max_behind_schedule_s": behind_max,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the producer process; prints a JSON summary line."""
    parser = argparse.ArgumentParser(prog="python -m bench.producer")
    parser.add_argument("phase", choices=["catalog", "events"])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as possible")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--event-prefix", default="be-")
    parser.add_argument("--profiles", type=int, default=1, help="1: publish user profiles too")
    parser.add_argument("--item-prefix", default="", help="catalog: prefix new item ids with it")
    args = parser.parse_args(argv)
    settings = StreamSettings(broker=args.broker, topic_prefix=args.topic_prefix)
    result = _catalog(args, settings) if args.phase == "catalog" else _events(args, settings)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
