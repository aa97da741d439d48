"""Follows the catalog topics (items, users) for the catalog agent; see :mod:`.followers`."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from promptrec.serving.catalog import CatalogRecord
from promptrec.streams.followers import TopicFollower
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["CatalogReader"]

log = logging.getLogger(__name__)


class CatalogReader(TopicFollower):
    """Reads the catalog topics into ``channel``; sends one marker record once caught up.

    Records go through an in-memory Faust channel to the catalog agent, which batches them with
    ``stream.take``.
    """

    name = "catalog"

    def __init__(self, settings: StreamSettings, names: TopicNames, channel: Any) -> None:
        super().__init__(settings, [names.items, names.users])
        self.channel = channel
        self.names = names

    async def handle(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        """Forward the records to the catalog agent."""
        logical = self.names.logical(tp.topic) or tp.topic
        for m in messages:
            await self.channel.send(
                value=CatalogRecord(logical, tp.partition, m.offset, m.key, m.value)
            )

    async def caught_up(self) -> None:
        """Send the end-of-replay marker through the channel, after the replayed records."""
        log.info("catalog replay complete")
        await self.channel.send(value=CatalogRecord("items", -1, -1, None, None, marker=True))
