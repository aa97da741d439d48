"""Testing aids: the mid-batch fetch bug of Tansu v0.6.0, and a slow seek after a rebalance.

The slow seek (``PROMPTREC_EMULATE_SLOW_SEEK_S``) makes Faust's ``Consumer.perform_seek`` wait
before it seeks, so that the fetch loop has time to hand records over while the seek is pending
if it can: the race that :mod:`promptrec.streams.recovery` closes, made wide enough to test.

Tansu v0.6.0 chose the record batches of a fetch by ``base_offset >= fetch offset``: a consumer
positioned inside a batch (a worker restarted at a committed offset in the middle of a
multi-record producer batch) got the batches after it, or nothing at all inside the partition's
last batch, until new records arrived. The embedded broker is built from a later Tansu that has
the fix (upstream 87db6ea), so the stall watchdog's end-to-end test cannot get the bug from the
broker. ``PROMPTREC_EMULATE_MIDBATCH_FETCH_BUG=true`` applies that rule to the fetch responses of
the worker's input topics instead: the broker, its records and offsets stay real, only the
batches that v0.6.0 would not have sent are dropped on arrival.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.consumer import fetcher
from faust.transport.consumer import Consumer

__all__ = ["emulate_midbatch_fetch_bug", "emulate_slow_seek"]

log = logging.getLogger(__name__)

_original = fetcher.PartitionRecords
_original_perform_seek = Consumer.perform_seek


class _BatchesFrom:
    """The batches of a fetch response whose base offset is at least ``offset``."""

    def __init__(self, records: Any, offset: int) -> None:
        self._records = records
        self._offset = offset
        self._next: Any = None

    def has_next(self) -> bool:
        while self._next is None and self._records.has_next():
            batch = self._records.next_batch()
            if batch.base_offset >= self._offset:
                self._next = batch
        return self._next is not None

    def next_batch(self) -> Any:
        if not self.has_next():
            return None
        batch, self._next = self._next, None
        return batch


def emulate_midbatch_fetch_bug(topics: Iterable[str]) -> None:
    """From now on, fetches of ``topics`` lose the batches that start below the fetch offset.

    Process-wide (every aiokafka consumer of the process); meant for test workers only.
    """
    names = frozenset(topics)

    class PartitionRecords(_original):  # type: ignore[misc, valid-type]
        def __init__(self, tp: Any, records: Any, aborted: Any, fetch_offset: int, *a: Any):
            if tp.topic in names:
                records = _BatchesFrom(records, fetch_offset)
            super().__init__(tp, records, aborted, fetch_offset, *a)

    fetcher.PartitionRecords = PartitionRecords  # type: ignore[misc]
    log.warning("testing aid on: Tansu v0.6.0's mid-batch fetch bug emulated on %s", sorted(names))


def emulate_slow_seek(seconds: float) -> None:
    """From now on, every ``perform_seek`` of a Faust consumer waits ``seconds`` first.

    Process-wide; meant for test workers only.
    """

    async def perform_seek(self: Any) -> None:
        await asyncio.sleep(seconds)
        await _original_perform_seek(self)

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    log.warning("testing aid on: each seek to the committed offsets waits %.1f s first", seconds)
