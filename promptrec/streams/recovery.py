"""Faust table recovery, mended twice: changelogs read to the Fetch high watermark, and the
hand-over to the streams made safe.

Faust recovers a table by reading its changelog partitions up to ``consumer.highwaters()``, which
its aiokafka driver answers with ListOffsets "latest" (``end_offsets``). The embedded broker
(Tansu, BROKER_NOTES (e)) answers that with the base offset of the partition's last record batch
plus one, so a changelog written in multi-record batches would be recovered short of its end and
a restarted worker would lose the newest history writes. That is why the worker used to produce
one record per batch (``PROMPTREC_PRODUCER_BATCH_BYTES=1``, now 16384 by default), which costs
~0.1 CPU ms per event.

:func:`install` makes the driver read the high watermark that Fetch responses carry (correct on
the embedded broker, equal to ListOffsets on Kafka), with
:func:`promptrec.streams.offsets.high_watermarks`, so the worker's producer can batch. It is the
largest of the two answers per partition; a partition without a Fetch answer fails the recovery
(the worker crashes and is restarted) rather than recovering a table short.

The hand-over (:func:`stop_flow_first`) mends a race in faust-streaming itself that lost events.
Recovery ends (``Recovery.on_recovery_completed``, ``Recovery._resume_streams``) with
``resume_partitions(stream partitions)``, ``await perform_seek()``, ``flow_control.resume()``
(which empties the agents' input queues) and ``consumer.resume_flow()``, while the consumer's
flow is already running: recovery resumed it to read the changelogs, and a worker without
changelog data never stopped it. The fetch loop can therefore hand stream records to the queues
before the seek, or between the seek and the emptying. Records handed over and then emptied away
were counted as read. When the seek lands below them, the next record fetched is above Faust's
read offset, and Faust books the jump as an acknowledged gap, so the next commit passes events
nobody processed: the kill -9 test (``tests/streams/test_crash_recovery.py``) lost 1,008 events
per partition that way, right after the committed offset. When the seek comes first, the emptied
records leave a hole below the next acknowledged offset, and that partition's commits stop
there. Stopping the flow before recovery's end starts hands nothing over until Faust resumes the
flow itself, after the seek and after the queues are emptied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from kafka import TopicPartition

from promptrec.streams.faust_fast import handoffs_settled
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.settings import StreamSettings

__all__ = ["install", "stop_flow_first", "true_highwaters"]

log = logging.getLogger(__name__)

_original = faust_aiokafka.AIOKafkaConsumerThread._highwaters
_original_completed = Recovery.on_recovery_completed
_original_resume_streams = Recovery._resume_streams
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


async def stop_flow_first(consumer: Any) -> None:
    """Stop the consumer's flow and let the fetch loop settle (see the module docstring).

    Faust resumes the flow itself at the end of the recovery step that follows. When that step
    returns early (a new rebalance began), the flow stays stopped until the new rebalance's
    recovery resumes it, as after any rebalance.
    """
    if consumer.flow_active:
        consumer.stop_flow()
    await handoffs_settled()


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    await stop_flow_first(self.app.consumer)
    await _original_completed(self, generation_id)


async def _resume_streams(self: Any, generation_id: int = 0) -> None:
    await stop_flow_first(self.app.consumer)
    await _original_resume_streams(self, generation_id)


def install(settings: StreamSettings) -> None:
    """Make Faust's table recovery read to the Fetch high watermark and hand over to the streams
    with the flow stopped (process-wide)."""
    global _settings
    _settings = settings
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign,assignment]
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]
