"""Bounded reading of the dead-letter topic: from the beginning (or given offsets) to its end.

"The end" is where each partition stood when the read started, so a read of a topic that keeps
growing still stops. It is taken from the high watermark of the first fetch response, not from
``end_offsets`` (ListOffsets): the embedded Tansu broker answers ListOffsets with the base offset
of the last record *batch* plus one, which is short of the end whenever producers batch. A
partition that ListOffsets reports empty is empty on both brokers (there is no last batch).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from promptrec.events.dead_letter import Selection
from promptrec.streams.clients import make_consumer
from promptrec.streams.exceptions import TopicError
from promptrec.streams.settings import StreamSettings

__all__ = ["DeadLetterReader", "PartitionSpan"]

_POLL_MS = 200


@dataclass
class PartitionSpan:
    """What was read of one partition: offsets ``[start, end)`` (end: the stop point found)."""

    start: int
    end: int | None = None
    read: int = 0


@dataclass
class DeadLetterReader:
    """Iterates the records of a topic up to its end at the start, honouring offset bounds.

    Attributes:
        settings: Connection settings.
        topic: Full topic name.
        selection: Offset bounds (``first_offset``/``last_offset`` per partition).
        idle_timeout: Stop when nothing arrives and no end is learnt for this many seconds.
        connect_timeout: Seconds to wait for the broker.
        complete: False when the idle timeout ended the read before every partition's end.
        spans: Partition -> what was read.
    """

    settings: StreamSettings
    topic: str
    selection: Selection
    idle_timeout: float = 10.0
    connect_timeout: float = 30.0
    complete: bool = True
    spans: dict[int, PartitionSpan] = field(default_factory=dict)
    _consumer: Any = None

    def __iter__(self) -> Iterator[Any]:
        """Yields kafka-python ``ConsumerRecord``s, partition by partition in offset order.

        Raises:
            TopicError: The topic does not exist.
            BrokerError: The broker cannot be reached.
        """
        ms = max(1000, int(self.connect_timeout * 1000))
        consumer = make_consumer(
            self.settings,
            bootstrap_timeout_ms=ms,
            request_timeout_ms=max(ms, 5000),
            fetch_max_wait_ms=100,
            allow_auto_create_topics=False,  # looking a topic up must not create it
        )
        self._consumer = consumer
        try:
            yield from self._read(consumer)
        finally:
            self._consumer = None
            consumer.close(autocommit=False)

    def topics(self) -> set[str]:
        """Names of the topics on the broker (only while iterating); no topic is created."""
        if self._consumer is None:
            raise RuntimeError("topics() is only available while reading")
        return set(self._consumer.topics())

    def partition_count(self, topic: str) -> int:
        """Partitions of an existing ``topic`` (only while iterating)."""
        if self._consumer is None:
            raise RuntimeError("partition_count() is only available while reading")
        return len(self._consumer.partitions_for_topic(topic) or ())

    def _read(self, consumer: Any) -> Iterator[Any]:
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise TopicError(
                f"topic {self.topic} does not exist (create it with `promptrec topics`)"
            )
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        beginning = consumer.beginning_offsets(tps)
        reported_end = consumer.end_offsets(tps)
        pending: dict[TopicPartition, int | None] = {}  # tp -> last offset wanted (inclusive)
        for tp in tps:
            start = max(beginning[tp], self.selection.first_offset(tp.partition))
            last = self.selection.last_offset(tp.partition)
            self.spans[tp.partition] = PartitionSpan(start)
            consumer.seek(tp, start)
            if reported_end[tp] > beginning[tp] and (last is None or last >= start):
                pending[tp] = last
            else:
                self.spans[tp.partition].end = start
                consumer.pause(tp)
        stops: dict[TopicPartition, int] = {}
        quiet_since = time.monotonic()
        while pending:
            batches = consumer.poll(timeout_ms=_POLL_MS)
            progress = self._learn_stops(consumer, pending, reported_end, stops)
            for tp, records in batches.items():
                stop, span = stops.get(tp), self.spans[tp.partition]
                progress = progress or bool(records)
                for rec in records:
                    if stop is not None and rec.offset >= stop:
                        break  # written after the read started
                    if rec.offset < span.start:
                        # A --from-offset past the end makes the consumer reset to earliest.
                        continue
                    span.read += 1
                    yield rec
            for tp in list(pending):
                stop = stops.get(tp)
                start = self.spans[tp.partition].start
                if stop is not None and (stop <= start or consumer.position(tp) >= stop):
                    self.spans[tp.partition].end = max(stop, start)
                    del pending[tp]
                    consumer.pause(tp)
            if progress:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self.idle_timeout:
                self.complete = False
                for tp in pending:
                    self.spans[tp.partition].end = consumer.position(tp)
                return

    @staticmethod
    def _learn_stops(
        consumer: Any,
        pending: dict[TopicPartition, int | None],
        reported_end: dict[TopicPartition, int],
        stops: dict[TopicPartition, int],
    ) -> bool:
        """Record each pending partition's stop offset from its first known high watermark."""
        learnt = False
        for tp, last in pending.items():
            if tp in stops:
                continue
            high = consumer.highwater(tp)
            if high is None:
                continue
            # ListOffsets can be short of the end, never past it: the larger value is the end.
            end = max(high, reported_end[tp])
            stops[tp] = end if last is None else min(end, last + 1)
            learnt = True
        return learnt
