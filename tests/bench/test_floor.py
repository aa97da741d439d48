"""The pipeline benchmark's floor (raw aiokafka passthrough) and its argument parsing."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable

import pytest
from kafka import TopicPartition

from bench.floor import end_offsets, format_offsets, main, parse_offsets, passthrough
from bench.pipeline import add_arguments, events_for
from promptrec.streams.clients import make_admin, make_consumer, make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics


def test_parse_offsets_round_trip_and_garbage() -> None:
    assert parse_offsets("0:10, 1:25") == {0: 10, 1: 25}
    assert parse_offsets(format_offsets({1: 3, 0: 7})) == {0: 7, 1: 3}
    for bad in ["", "0", "0:x", "a:1", "-1:3", "0:-2", "0:1,0:2", "0:1:2"]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse_offsets(bad)


def test_pipeline_floor_and_rate_options() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).floor is True
    args = p.parse_args(
        ["--no-floor", "--rate", "MAX,250,2000", "--duration", "3", "--events", "7"]
    )
    assert args.floor is False and args.rate == [0.0, 250.0, 2000.0]
    # Paced rates send rate * duration events; MAX sends --events.
    assert [events_for(args, r) for r in args.rate] == [7, 750, 6000]
    with pytest.raises(SystemExit):
        p.parse_args(["--rate", "fast"])


def _topic(settings: StreamSettings, name: str) -> str:
    admin = make_admin(settings)
    try:
        spec = {"num_partitions": settings.partitions, "replication_factor": 1}
        admin.create_topics({name: spec}, timeout_ms=30_000, raise_errors=False)
    finally:
        admin.close()
    return name


def _read_all(
    settings: StreamSettings, topic: str, partitions: int, want: int
) -> dict[tuple[int, int], bytes]:
    """``(partition, offset) -> value`` of the first ``want`` records of ``topic``."""
    consumer = make_consumer(settings, fetch_max_wait_ms=50)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    found: dict[tuple[int, int], bytes] = {}
    for _ in range(100):
        for records in consumer.poll(timeout_ms=200).values():
            found.update({(r.partition, r.offset): r.value for r in records})
        if len(found) >= want:
            break
    consumer.close()
    return found


@pytest.mark.integration
def test_passthrough_copies_the_marked_events_garbage_included(
    make_settings: Callable[..., StreamSettings], group_id: Callable[[], str]
) -> None:
    settings = make_settings(partitions=2, rebalance_timeout_s=3.0)
    ensure_topics(settings)
    topic = TopicNames.from_settings(settings).interactions
    producer = make_producer(settings, linger_ms=0)
    # Before the run: records the floor must skip, though the start offsets (read next, from a
    # broker whose end offsets can trail) may point before some of them.
    for n in range(6):
        producer.send(topic, key=f"u{n}".encode(), value=b'{"event_id":"old-%d"}' % n)
    producer.flush()
    start = end_offsets(settings, topic, 2)
    # The floor does not decode: garbage that carries the marker is copied like any record.
    values = [b'\xff\xfe "event_id":"r0-x', b'{"event_id":"r0-', b'"event_id":"r0-{{{']
    values += [b'{"event_id":"r0-%d","ts":1}' % n for n in range(27)]
    for n, value in enumerate(values):
        producer.send(topic, key=f"u{n}".encode(), value=value)
    producer.send(topic, key=b"u0", value=b"")  # an empty value: no marker, skipped
    producer.flush()
    producer.close()
    out = _topic(settings, f"{settings.topic_prefix}floor-out")
    job = passthrough(settings, topic, out, group_id(), start, len(values), 8, b'"event_id":"r0-')
    result = asyncio.run(job)
    assert result["events"] == len(values)
    assert result["events_per_s"] > 0 and result["batches"] >= len(values) / 8
    copied = [json.loads(v) for v in _read_all(settings, out, 2, len(values)).values()]
    assert len(copied) == len(values)
    # One small record per input event, each (partition, offset) exactly once, and each one of
    # the run's records: the older ones and the empty value were skipped.
    source = _read_all(settings, topic, 2, 6 + len(values) + 1)
    assert sorted(source[c["p"], c["o"]] for c in copied) == sorted(values)


@pytest.mark.integration
def test_passthrough_times_out_when_events_are_missing(
    make_settings: Callable[..., StreamSettings], group_id: Callable[[], str]
) -> None:
    settings = make_settings(partitions=1, rebalance_timeout_s=3.0)
    ensure_topics(settings)
    topic = TopicNames.from_settings(settings).interactions
    producer = make_producer(settings, linger_ms=0)
    for n in range(3):
        producer.send(topic, key=b"u", value=b"m%d" % n)
    producer.flush()
    producer.close()
    out = _topic(settings, f"{settings.topic_prefix}floor-out")
    job = passthrough(settings, topic, out, group_id(), {0: 0}, 5, 8, b"m", idle_timeout=2.0)
    with pytest.raises(TimeoutError, match="3 of 5 records"):
        asyncio.run(job)


def test_passthrough_and_main_reject_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    settings = StreamSettings(broker="127.0.0.1:1")
    with pytest.raises(ValueError, match="must be >= 1"):
        asyncio.run(passthrough(settings, "t", "o", "g", {0: 0}, 0, 8))
    with pytest.raises(ValueError, match="must be >= 1"):
        asyncio.run(passthrough(settings, "t", "o", "g", {0: 0}, 5, 0))
    argv = ["--broker", "127.0.0.1:1", "--topic-prefix", "x.", "--topic", "t", "--out-topic", "o",
            "--group", "g", "--start", "0:9", "--count", "0"]  # fmt: skip
    assert main(argv) == 2
    assert "must be >= 1" in capsys.readouterr().err
    for bad in (["--start", "garbage"], ["--count", "many"]):
        with pytest.raises(SystemExit):
            main([*argv, *bad])
