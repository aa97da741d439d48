"""The floor of ``promptrec bench pipeline``: a raw consume -> produce passthrough, no recommender.

``python -m bench.floor`` joins a fresh consumer group on the interactions topic, seeks every
partition to the given start offset, and for each ``getmany`` batch writes one small record per
event to an output topic with a producer configured like the worker's recommendations producer
(:class:`~promptrec.streams.publisher.RecommendationPublisher`: ``acks=all``, ``linger_ms=0``,
``max_batch_size=recommendations_batch_bytes``), awaiting the broker's acks before it reads the
next batch, as the worker does before it acknowledges its input. It stops once ``--count``
records whose value contains ``--marker`` (the run's event-id prefix) are copied and prints one
JSON line: events, seconds from the first record read to the last ack, events/s and CPU
ms/event. The group join is not timed.

Why a count and a marker rather than an offset range: the embedded broker's end offsets
(ListOffsets latest) are the base offset of the last batch + 1 (BROKER_NOTES (e)), e.g. 1,700
for 2,000 records produced and consumed, so a range read from them misses events. Start offsets
read before a run can only be early, and the marker skips the earlier records.

Run on the same broker and the same (already produced) events as the worker, it is the ceiling a
Kafka worker in Python can reach on this machine; the worker's events/s over it is how much of
that ceiling the recommender path keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from kafka import TopicPartition as SyncTopicPartition

from promptrec.streams.clients import aiokafka_config, make_admin, make_aio_producer, make_consumer
from promptrec.streams.settings import StreamSettings

if TYPE_CHECKING:
    from bench.cluster import Cluster

__all__ = [
    "Offsets",
    "end_offsets",
    "format_offsets",
    "main",
    "parse_offsets",
    "passthrough",
    "run_floor",
]

# partition -> offset
Offsets = dict[int, int]


def parse_offsets(text: str) -> Offsets:
    """``"0:10,1:25"`` -> ``{0: 10, 1: 25}``.

    Raises:
        argparse.ArgumentTypeError: Not a comma list of ``partition:offset`` with both >= 0.
    """
    out: Offsets = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        p, sep, o = part.partition(":")
        try:
            partition, offset = int(p), int(o)
        except ValueError:
            partition = offset = -1
        if not sep or partition < 0 or offset < 0:
            raise argparse.ArgumentTypeError(f"want PARTITION:OFFSET (both >= 0), got {part!r}")
        if partition in out:
            raise argparse.ArgumentTypeError(f"partition {partition} given twice")
        out[partition] = offset
    if not out:
        raise argparse.ArgumentTypeError("no offsets given")
    return out


def format_offsets(offsets: Offsets) -> str:
    """Inverse of :func:`parse_offsets`."""
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


class _SeekOnAssign(ConsumerRebalanceListener):  # type: ignore[misc]
    """Moves each assigned partition to its start offset (the group has no committed ones)."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, start: Offsets) -> None:
        self.consumer = consumer
        self.topic = topic
        self.start = start
        self.assigned = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            self.consumer.seek(tp, self.start.get(tp.partition, 0))
        if assigned:
            self.assigned.set()


async def passthrough(
    settings: StreamSettings,
    topic: str,
    out_topic: str,
    group: str,
    start: Offsets,
    count: int,
    max_records: int,
    marker: bytes = b"",
    join_timeout: float = 120.0,
    idle_timeout: float = 30.0,
) -> dict[str, Any]:
    """Copy ``count`` records of ``topic`` from ``start`` on to ``out_topic``, one record each.

    Only records whose value contains ``marker`` count (all, when empty): the run's events. Each
    output record names the partition and offset it copies.

    Raises:
        ValueError: ``count`` < 1 or ``max_records`` < 1.
        TimeoutError: The group join did not finish within ``join_timeout`` s, or no record came
            for ``idle_timeout`` s before ``count`` were copied.
    """
    if count < 1 or max_records < 1:
        raise ValueError(f"count and max_records must be >= 1, got {count} and {max_records}")
    consumer = AIOKafkaConsumer(
        group_id=group,
        client_id=f"{settings.effective_app_id}-floor",
        auto_offset_reset="earliest",
        # The worker's Faust consumer: same fetch wait and fetch size, same group timeouts.
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_max_bytes=4 * 1024 * 1024,
        max_partition_fetch_bytes=max(1 << 20, settings.max_event_bytes * 2),
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(settings.rebalance_timeout_s * 1000),
        **aiokafka_config(settings),
    )
    producer = make_aio_producer(
        settings, linger_ms=0, max_batch_size=settings.recommendations_batch_bytes
    )
    await producer.start()
    await consumer.start()
    done = batches = skipped = 0
    t0 = cpu0 = join_s = 0.0
    try:
        listener = _SeekOnAssign(consumer, topic, start)
        consumer.subscribe([topic], listener=listener)
        t_join = last = time.perf_counter()
        # The first getmany calls drive the join; nothing is timed until a record arrives.
        while done < count:
            now = time.perf_counter()
            if not listener.assigned.is_set() and now - t_join > join_timeout:
                raise TimeoutError(f"floor group {group!r} not assigned after {join_timeout:.0f} s")
            if listener.assigned.is_set() and now - last > idle_timeout:
                raise TimeoutError(f"floor: {done} of {count} records, then none for "
                                   f"{idle_timeout:.0f} s")  # fmt: skip
            polled = await consumer.getmany(timeout_ms=100, max_records=max_records)
            if not polled:
                continue
            last = time.perf_counter()
            if not t0:
                t0, cpu0 = last, time.process_time()
                join_s = t0 - t_join
            records: list[tuple[bytes | None, bytes]] = []
            for tp, messages in polled.items():
                for m in messages:
                    if marker in (m.value or b""):
                        records.append((m.key, b'{"p":%d,"o":%d}' % (tp.partition, m.offset)))
                    else:
                        skipped += 1
            records = records[: count - done]
            futures = [await producer.send(out_topic, value=v, key=k) for k, v in records]
            await asyncio.gather(*futures)
            done += len(records)
            batches += 1
        seconds = time.perf_counter() - t0 if t0 else 0.0
        cpu = time.process_time() - cpu0 if t0 else 0.0
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "events": done,
        "skipped": skipped,
        "batches": batches,
        "mean_batch": done / batches if batches else 0.0,
        "join_s": join_s,
        "seconds": seconds,
        "events_per_s": done / seconds if seconds > 0 else 0.0,
        "cpu_ms_per_event": 1000.0 * cpu / done if done else float("nan"),
    }


def end_offsets(settings: StreamSettings, topic: str, partitions: int) -> Offsets:
    """``partition -> end offset`` of ``topic`` (partitions ``0 .. partitions-1``)."""
    consumer = make_consumer(settings)
    try:
        tps = [SyncTopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def run_floor(
    cluster: Cluster, start: Offsets, count: int, marker: str, timeout: float
) -> dict[str, Any]:
    """Run the floor process on ``count`` events of the cluster's interactions topic.

    ``start``: end offsets read before the events were produced; ``marker``: a byte string only
    those events' values contain. A fresh consumer group and output topic (the cluster's
    partitions) each time, and the worker's environment, so its batch size and producer settings
    are the worker's.
    """
    s = cluster.settings
    assert s is not None, "cluster not started"
    tag = f"{s.topic_prefix}floor-{uuid.uuid4().hex[:8]}"
    admin = make_admin(s)
    try:
        spec = {"num_partitions": cluster.partitions, "replication_factor": 1}
        admin.create_topics({tag: spec}, timeout_ms=30_000, raise_errors=False)
    finally:
        admin.close()
    return cluster.run_module(
        "bench.floor", timeout, worker_env=True, topic=cluster.names.interactions,
        out_topic=tag, group=tag, start=format_offsets(start), count=count, marker=marker,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the floor process; prints one JSON summary line."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--topic", required=True, help="input topic (full name)")
    parser.add_argument("--out-topic", required=True, help="output topic (full name)")
    parser.add_argument("--group", required=True, help="a fresh consumer group id")
    parser.add_argument("--start", type=parse_offsets, required=True, help="P:O,... to read from")
    parser.add_argument("--count", type=int, required=True, help="records to copy")
    parser.add_argument("--marker", default="", help="copy only values containing this")
    parser.add_argument("--max-records", type=int, default=0,
                        help="getmany max_records (default: the worker's batch_size)")  # fmt: skip
    args = parser.parse_args(argv)
    settings = StreamSettings(broker=args.broker, topic_prefix=args.topic_prefix)
    max_records = args.max_records if args.max_records > 0 else settings.batch_size
    try:
        job = passthrough(
            settings, args.topic, args.out_topic, args.group, args.start, args.count,
            max_records, args.marker.encode(),
        )  # fmt: skip
        result = asyncio.run(job)
    except (ValueError, TimeoutError) as exc:
        print(f"floor: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
