"""Per-worker readers of whole topics: the catalog (items, users) and the model updates.

They deliberately have no consumer group: the catalog must not be partition-split between
workers, since each worker answers for its users against the whole catalog, and every worker must
see every other worker's head updates. Each reader replays its topics from the beginning, says
once when it has caught up with the end offsets it saw at start, then follows new records.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord

from promptrec.serving.catalog import CatalogRecord
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["CatalogReader", "TopicFollower", "aiokafka_config", "make_aio_producer"]

log = logging.getLogger(__name__)


def aiokafka_config(settings: StreamSettings) -> dict[str, Any]:
    """aiokafka connection options, with the same security settings as every other client."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    if settings.security_protocol.startswith("SASL"):
        config["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        config["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            config["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return config


def make_aio_producer(settings: StreamSettings, **overrides: Any) -> AIOKafkaProducer:
    """An aiokafka producer with the security settings (not started); ``overrides`` win."""
    options: dict[str, Any] = {
        "client_id": f"{settings.effective_app_id}-publisher",
        "acks": "all",
        **aiokafka_config(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


class TopicFollower:
    """Replays every partition of some topics, then follows them until stopped.

    Subclasses implement :meth:`handle` (a batch of records of one partition) and
    :meth:`caught_up` (called once, when the replay reached the start-time end offsets).
    """

    name = "follower"

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
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.effective_app_id}-{self.name}",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            # A single record may be as large as the biggest accepted input plus framing;
            # bigger ones still arrive (the broker returns at least one batch).
            max_partition_fetch_bytes=max(1 << 20, self.settings.max_event_bytes * 2),
            **aiokafka_config(self.settings),
        )
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
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
            partitions = None
            for _ in range(50):
                partitions = consumer.partitions_for_topic(topic)
                if partitions:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
            if not partitions:
                raise RuntimeError(f"{self.name} topic {topic!r} not found")
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        consumer.assign(tps)
        return tps


class CatalogReader(TopicFollower):
    """Reads the catalog topics into ``channel``; sends one marker record once caught up.

    Records go through an in-memory Faust channel to the catalog agent, which batches them with
    ``stream.take``.
    """

    name = "catalog"

    def __init__(self, settings: StreamSettings, channel: Any) -> None:
        names = TopicNames.from_settings(settings)
        super().__init__(settings, [names.items, names.users])
        self.channel = channel
        self._logical = {names.items: "items", names.users: "users"}

    async def handle(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        """Forward the records to the catalog agent."""
        for m in messages:
            await self.channel.send(
                value=CatalogRecord(self._logical[tp.topic], tp.partition, m.offset, m.key, m.value)
            )

    async def caught_up(self) -> None:
        """Send the end-of-replay marker through the channel, after the replayed records."""
        log.info("catalog replay complete")
        await self.channel.send(value=CatalogRecord("items", -1, -1, None, None, marker=True))
