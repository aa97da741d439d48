"""Faust table recovery that reads changelogs to the Fetch high watermark.

Faust recovers a table by reading its changelog partitions up to ``consumer.highwaters()``, which
its aiokafka driver answers with ListOffsets "latest" (``end_offsets``). The embedded broker
(Tansu, BROKER_NOTES (e)) answers that with the base offset of the partition's last record batch
plus one, so a changelog written in multi-record batches would be recovered short of its end and
a restarted worker would lose the newest history writes. That is why the worker used to produce
one record per batch (``PROMPTREC_PRODUCER_BATCH_BYTES=1``), which costs ~0.1 CPU ms per event.

:func:`install` makes the driver read the high watermark that Fetch responses carry (correct on
the embedded broker, equal to ListOffsets on Kafka), with
:func:`promptrec.streams.offsets.high_watermarks`, so the worker's producer can batch. It is the
largest of the two answers per partition; a partition without a Fetch answer fails the recovery
(the worker crashes and is restarted) rather than recovering a table short.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from kafka import TopicPartition

from promptrec.streams.offsets import high_watermarks
from promptrec.streams.settings import StreamSettings

__all__ = ["install", "true_highwaters"]

log = logging.getLogger(__name__)

_original = faust_aiokafka.AIOKafkaConsumerThread._highwaters
# The settings of the latest make_app (connection and security of the throw-away consumer).
_settings: StreamSettings | None = None


async def true_highwaters(
    settings: StreamSettings, listed: Mapping[Any, int | None], timeout_s: float = 10.0
) -> dict[Any, int | None]:
    """``listed`` (ListOffsets answers by partition), raised to the Fetch high watermarks.

    Keys keep their type (Faust's ``TP`` tuples); the blocking Kafka client runs on a thread.

    Raises:
        TimeoutError: Some partition had no Fetch response within ``timeout_s``.
    """
    tps = [TopicPartition(tp.topic, tp.partition) for tp in listed]
    marks = await asyncio.to_thread(high_watermarks, settings, tps, timeout_s)
    out: dict[Any, int | None] = {}
    for tp, end in listed.items():
        mark = marks[TopicPartition(tp.topic, tp.partition)]
        if end is not None and mark != end:
            # Expected on the embedded broker when the last batch holds several records.
            log.debug("%s[%d]: ListOffsets %d, Fetch high watermark %d", tp.topic,
                      tp.partition, end, mark)  # fmt: skip
        out[tp] = mark if end is None else max(end, mark)
    return out


async def _highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int | None]:
    listed = await _original(self, list(partitions))
    # In a transaction Faust reads last stable offsets, which this does not replace.
    if _settings is None or not listed or self.consumer.in_transaction:
        return listed
    return await true_highwaters(_settings, listed)


def install(settings: StreamSettings) -> None:
    """Make Faust's table recovery read to the Fetch high watermark (process-wide)."""
    global _settings
    _settings = settings
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign,assignment]
