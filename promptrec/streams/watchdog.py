"""Stalled-partition watchdog of a worker: detect input partitions that stop moving, recover them.

Every second the watchdog reads, for each assigned input partition, the fetch position, the high
watermark and the time of the last fetch response from the aiokafka consumer under Faust. These
are plain attribute reads of the consumer's subscription state (what Faust's own
``verify_event_path`` reads from the event loop), so nothing blocks the event loop and no broker
request is made. The end offset is the fetch responses' high watermark: Tansu's ListOffsets
"latest" counts batches and would hide the lag.

The decisions are in :mod:`promptrec.observability.stalls`. A stall is logged and counted in
``promptrec_partition_stalls_total{topic,partition}``; recovery seeks the partition back (to the
committed offset, then further) on the consumer's own thread, and rejoins the group when no
seek helps. Records fetched again are dropped by Faust below its read offset, so the agents see
each record once; a rejoin redelivers from the committed offset, which the history's log-position
dedupe recognises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from promptrec.observability.metrics import Metrics
from promptrec.observability.stalls import Action, PartitionSample, Recovery, StallDetector

if TYPE_CHECKING:
    import faust

__all__ = ["StallWatchdog"]

log = logging.getLogger(__name__)


class StallWatchdog:
    """Watches the input partitions of a Faust app's consumer; see the module docstring."""

    def __init__(
        self,
        app: faust.App,
        metrics: Metrics,
        logical: Mapping[str, str],
        timeout_s: float,
        *,
        interval_s: float = 1.0,
        probe_s: float | None = None,
    ) -> None:
        """``logical`` maps full input topic names to logical names (label values).

        ``interval_s`` is the sampling period; it must exceed the consumer's fetch wait so that
        a fetched partition shows a new fetch response in every sample. ``probe_s`` is how long
        each recovery step gets to show an effect (default: the timeout, at most 5 s).
        """
        self.app = app
        self.metrics = metrics
        self.logical = dict(logical)
        self.interval_s = interval_s
        self.probe_s = probe_s if probe_s is not None else min(timeout_s, 5.0)
        self.detector = StallDetector(timeout_s)
        # Records the consumer holds (or the broker has) that Faust never hands to the agents:
        # the delivered offset does not move although the partition is behind. Seen on the
        # embedded broker after a restart (a "silent" worker: lag > 0, fetch position at the
        # high watermark, nothing delivered). Twice the timeout, since a long engine stage
        # also holds deliveries back; the remedy is a rejoin (Faust re-seeks to the committed
        # offset and the history's log-position dedupe recognises the redeliveries).
        self.delivery = StallDetector(2 * timeout_s)
        self.recoveries: dict[TopicPartition, Recovery] = {}
        self._labelled: set[TopicPartition] = set()

    # -- reading the consumer (event loop thread, no I/O) ----------------------------------

    def _thread(self) -> Any:
        consumer = getattr(self.app, "_consumer", None)
        return getattr(consumer, "_thread", None)

    def _aiokafka(self) -> Any:
        return getattr(self._thread(), "_consumer", None)

    def samples(self) -> dict[TopicPartition, PartitionSample]:
        """Position, high watermark and last fetch time of each assigned input partition."""
        aio = self._aiokafka()
        if aio is None:
            return {}
        assignment = aio._subscription.subscription
        assignment = getattr(assignment, "assignment", None)
        if assignment is None or not assignment.active:
            return {}
        out: dict[TopicPartition, PartitionSample] = {}
        for tp in list(assignment.tps):
            if tp.topic not in self.logical:
                continue
            state = assignment.state_value(tp)
            if state is None:
                continue
            position = state.position if state.has_valid_position else None
            out[TopicPartition(tp.topic, tp.partition)] = PartitionSample(
                position, state.highwater, state.timestamp
            )
        return out

    # -- one round ------------------------------------------------------------------------

    async def check_once(self, now: float | None = None) -> list[tuple[TopicPartition, Action]]:
        """Sample every input partition, flag new stalls, advance recoveries; returns actions."""
        now = time.monotonic() if now is None else now
        if self.app.rebalancing:
            # Positions are being reset by the rebalance; judge the new assignment afresh.
            self.detector.retain(())
            self.recoveries.clear()
            return []
        samples = self.samples()
        self.detector.retain(samples)
        self.delivery.retain(samples)
        for tp in [tp for tp in self.recoveries if tp not in samples]:
            del self.recoveries[tp]
        done: list[tuple[TopicPartition, Action]] = []
        for tp, sample in samples.items():
            topic, partition = self.logical[tp.topic], str(tp.partition)
            if tp not in self._labelled:
                # Pre-initialise the series at 0 so increase() sees its first stall.
                self.metrics.partition_stalls.labels(topic, partition)
                self._labelled.add(tp)
            recovery = self.recoveries.get(tp)
            if recovery is None and self._undelivered(tp, sample, now):
                await self._rejoin_undelivered(tp, sample)
                done.append((tp, Action("rejoin")))
                continue
            if recovery is None and self.detector.observe(tp, sample, now):
                assert sample.position is not None  # observe() flags only known positions
                committed = self._committed(tp)
                log.warning(
                    "partition %s[%d] stalled at offset %d for %.0f s (high watermark %s, "
                    "committed %s); recovering",
                    topic, tp.partition, sample.position, self.detector.timeout_s,
                    sample.highwater, committed,
                )  # fmt: skip
                self.metrics.partition_stalls.labels(topic, partition).inc()
                recovery = self.recoveries[tp] = Recovery(
                    sample.position, committed, now, self.probe_s
                )
            if recovery is None:
                continue
            action = recovery.poll(sample.position, now)
            if action is not None:
                await self._apply(tp, recovery, action)
                done.append((tp, action))
            if recovery.done:
                del self.recoveries[tp]
                self.detector.forget(tp)
                if recovery.healed:
                    log.warning(
                        "partition %s[%d] moves again (position %s) after %s",
                        topic, tp.partition, sample.position,
                        ", ".join(_describe(a) for a in recovery.actions),
                    )  # fmt: skip
        return done

    def _delivered(self, tp: TopicPartition) -> int | None:
        """Next offset Faust will hand to a stream (read offset + 1, else the committed one)."""
        consumer = getattr(self.app, "_consumer", None)
        read = getattr(consumer, "_read_offset", None)
        value = read.get(tp) if read is not None else None
        return int(value) + 1 if isinstance(value, int) else self._committed(tp)

    def _undelivered(self, tp: TopicPartition, sample: PartitionSample, now: float) -> bool:
        """True when ``tp``'s delivered offset stayed below what the broker has for 2x timeout."""
        delivered = self._delivered(tp)
        ends = [o for o in (sample.highwater, sample.position) if o is not None]
        if delivered is None or not ends:
            self.delivery.forget(tp)
            return False
        # fetched_at=now: judged on the delivered offset alone, fetching or not.
        return self.delivery.observe(tp, PartitionSample(delivered, max(ends), now), now)

    async def _rejoin_undelivered(self, tp: TopicPartition, sample: PartitionSample) -> None:
        topic = self.logical[tp.topic]
        log.warning(
            "partition %s[%d] delivered nothing for %.0f s (next offset %s, fetch position %s, "
            "high watermark %s); rejoining the group",
            topic, tp.partition, self.delivery.timeout_s, self._delivered(tp),
            sample.position, sample.highwater,
        )  # fmt: skip
        self.metrics.partition_stalls.labels(topic, str(tp.partition)).inc()
        self.delivery.forget(tp)
        self.detector.forget(tp)
        thread, aio = self._thread(), self._aiokafka()
        if thread is None or aio is None:
            return
        try:
            await thread.call_thread(aio._coordinator.request_rejoin)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("rejoin for %s[%d] failed: %r", topic, tp.partition, exc)

    def _committed(self, tp: TopicPartition) -> int | None:
        consumer = getattr(self.app, "_consumer", None)
        offsets = getattr(consumer, "_committed_offset", None)
        value = offsets.get(tp) if offsets is not None else None
        return int(value) if isinstance(value, int) else None

    async def _apply(self, tp: TopicPartition, recovery: Recovery, action: Action) -> None:
        """Carry out ``action`` on the consumer's own thread (aiokafka is not thread-safe)."""
        thread, aio = self._thread(), self._aiokafka()
        if thread is None or aio is None:
            return
        name = self.logical.get(tp.topic, tp.topic)
        log.warning("partition %s[%d] stall recovery: %s", name, tp.partition, _describe(action))
        try:
            if action.kind == "seek" and action.offset is not None:
                self._guard_redelivery(tp, recovery.stuck)
                await thread.call_thread(aio.seek, tp, action.offset)
            else:
                await thread.call_thread(aio._coordinator.request_rejoin)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Revoked in between, consumer stopping: the next round sees the new state.
            log.warning("stall recovery of %s[%d] failed: %r", name, tp.partition, exc)

    def _guard_redelivery(self, tp: TopicPartition, stuck: int) -> None:
        """Make Faust drop the record before ``stuck`` too when it is fetched again.

        Faust drops fetched records below its read offset, which is the last offset it handed to
        a stream (or, after a seek to the committed offset, that offset itself). Read offset
        ``stuck - 1`` means every fetched record was handed over, so none is still in flight and
        raising it to ``stuck`` is safe; any other value is left alone.
        """
        consumer = getattr(self.app, "_consumer", None)
        read = getattr(consumer, "_read_offset", None)
        if read is not None and read.get(tp) == stuck - 1:
            read[tp] = stuck

    async def run(self) -> None:
        """Check every ``interval_s`` until cancelled; an error is logged, never fatal."""
        if self.detector.timeout_s <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The watchdog is a safety net: its own failure must not stop the worker.
                log.exception("stall watchdog round failed")


def _describe(action: Action) -> str:
    return f"seek to {action.offset}" if action.kind == "seek" else "rejoin the group"
