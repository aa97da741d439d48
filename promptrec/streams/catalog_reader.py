"""Per-worker catalog consumer: every partition of ``items`` and ``users``, from the beginning.

It deliberately has no consumer group: items must not be partition-split between workers, since
each worker answers for its users against the whole catalog. Records go through an in-memory Faust
channel to the catalog agent, which batches them with ``stream.take``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.helpers import create_ssl_context

from promptrec.streams.catalog import CatalogRecord
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["CatalogReader", "aiokafka_config"]

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


class CatalogReader:
    """Reads the catalog topics into ``channel``; sends one marker record once caught up."""

    def __init__(self, settings: StreamSettings, channel: Any) -> None:
        self.settings = settings
        self.channel = channel
        names = TopicNames.from_settings(settings)
        self._logical = {names.items: "items", names.users: "users"}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask the read loop to end."""
        self._stopping.set()

    async def run(self) -> None:
        """Assign all catalog partitions, replay them, then follow new records until stopped."""
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.effective_app_id}-catalog",
            **aiokafka_config(self.settings),
        )
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            log.info("catalog replay: %d records in %d partitions", sum(end.values()), len(tps))
            if not pending:
                await self._send_marker()
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=1000)
                for tp, messages in batches.items():
                    for m in messages:
                        await self.channel.send(
                            value=CatalogRecord(
                                self._logical[tp.topic], tp.partition, m.offset, m.key, m.value
                            )
                        )
                if pending:
                    # Positions, not last offsets: compaction can leave gaps at a topic's end.
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        await self._send_marker()
        finally:
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps: list[TopicPartition] = []
        for topic in self._logical:
            partitions = None
            for _ in range(50):
                partitions = consumer.partitions_for_topic(topic)
                if partitions:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
            if not partitions:
                raise RuntimeError(f"catalog topic {topic!r} not found")
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        consumer.assign(tps)
        return tps

    async def _send_marker(self) -> None:
        log.info("catalog replay complete")
        await self.channel.send(value=CatalogRecord("items", -1, -1, None, None, marker=True))
