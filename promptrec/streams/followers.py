"""Per-worker readers of whole topics, replayed from the beginning and then followed.

They deliberately have no consumer group: the catalog must not be partition-split between
workers, since each worker answers for its users against the whole catalog, and every worker must
see every other worker's head updates. Each follower replays its topics from the beginning, says
once when it has caught up with the end offsets it saw at start, then follows new records. Those
ends are Fetch high watermarks: the embedded broker's ListOffsets answer stops short of a
partition's last multi-record batch (BROKER_NOTES (e)), which would end the replay early.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from kafka import TopicPartition as KafkaTP

from promptrec.streams.clients import make_aio_consumer
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.retry import Backoff, retry
from promptrec.streams.settings import StreamSettings

__all__ = ["TopicFollower", "TopicMissing"]

log = logging.getLogger(__name__)


class TopicMissing(RuntimeError):
    """A followed topic has no partitions in the broker's metadata."""


class TopicFollower:
    """Replays every partition of some topics, then follows them until stopped.

    Subclasses implement :meth:`handle` (a batch of records of one partition) and
    :meth:`caught_up` (called once, when the replay reached the start-time end offsets).
    """

    name = "follower"
    # How long the follower waits for its topics to appear in the metadata (~10 s).
    metadata_attempts = 50
    metadata_backoff = Backoff(first=0.2, factor=1.0)

    def __init__(self, settings: StreamSettings, topics: list[str]) -> None:
        self.settings = settings
        self.topics = topics
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask the read loop to end."""
        self._stopping.set()

    async def handle(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        """Process records of one partition, in offset order."""
        raise NotImplementedError

    async def caught_up(self) -> None:
        """The replay is complete."""

    async def replay_starting(self, records: int) -> None:
        """Called once before the replay, with the number of records it will cover (at most)."""

    async def run(self) -> None:
        """Assign all partitions, replay them, then follow new records until stopped."""
        consumer = make_aio_consumer(self.settings, self.name)
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            await consumer.seek_to_beginning(*tps)
            listed = await consumer.end_offsets(tps)
            marks = await asyncio.to_thread(
                high_watermarks, self.settings, [KafkaTP(tp.topic, tp.partition) for tp in tps]
            )
            end = {tp: max(listed[tp], marks[KafkaTP(tp.topic, tp.partition)]) for tp in tps}
            pending = {tp for tp in tps if end[tp] > 0}
            log.info("%s replay: up to %d records", self.name, sum(end.values()))
            await self.replay_starting(sum(end.values()))
            if not pending:
                await self.caught_up()
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=1000)
                for tp, messages in batches.items():
                    await self.handle(tp, messages)
                if pending:
                    # Positions, not last offsets: compaction can leave gaps at a topic's end.
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        await self.caught_up()
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps: list[TopicPartition] = []
        for topic in self.topics:

            async def partitions(topic: str = topic) -> set[int]:
                found = consumer.partitions_for_topic(topic)
                if not found:
                    await consumer._client.force_metadata_update()
                    raise TopicMissing(f"{self.name} topic {topic!r} not found")
                return set(found)

            found = await retry(
                partitions,
                attempts=self.metadata_attempts,
                backoff=self.metadata_backoff,
                retry_on=(TopicMissing,),
            )
            tps.extend(TopicPartition(topic, p) for p in sorted(found))
        consumer.assign(tps)
        return tps
