"""Consumer lag of the worker's group: end offsets minus committed offsets, per owned partition.

Faust commits the group's offsets every few seconds; a kafka-python admin client reads them
(OffsetFetch) and the partitions' end offsets (ListOffsets) on a timer, off the event loop. Each
worker reports only the input partitions assigned to it, so N workers never report the same
series twice and ``sum by (topic)`` over workers is the group's lag. Labels are the logical topic
and the partition number: bounded by the topic's partition count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from promptrec.observability.metrics import Metrics

__all__ = ["LagPoller", "compute_lag"]

log = logging.getLogger(__name__)


def compute_lag(
    end: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int],
    earliest: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Records behind per partition.

    A partition without a committed offset (the group has not committed there yet) counts from
    its earliest offset, as the worker's ``auto_offset_reset=earliest`` consumer would. Negative
    values (a commit racing the end-offset read) are clamped to zero.
    """
    lag: dict[TopicPartition, int] = {}
    for tp, end_offset in end.items():
        start = committed.get(tp, -1)
        if start < 0:
            start = earliest.get(tp, 0)
        lag[tp] = max(0, end_offset - start)
    return lag


class LagPoller:
    """Polls the lag of the partitions returned by ``owned()`` into ``promptrec_consumer_lag``."""

    def __init__(
        self,
        group: str,
        metrics: Metrics,
        logical: Mapping[str, str],
        owned: Callable[[], Iterable[TopicPartition]],
        *,
        admin_factory: Callable[[], Any],
        interval_s: float = 15.0,
        end_offsets: Callable[[list[TopicPartition]], Mapping[TopicPartition, int]] | None = None,
    ) -> None:
        """``logical`` maps full topic names to the logical names used as label values.

        ``admin_factory`` returns a kafka-python ``KafkaAdminClient`` (the worker passes the
        one client factory of :mod:`promptrec.streams.clients`). ``end_offsets`` reads the
        partitions' end offsets; by default ListOffsets "latest" through the admin client. The
        worker passes the Fetch high watermarks instead (:func:`promptrec.streams.offsets.
        high_watermarks`): the embedded broker's ListOffsets counts batches, not records.
        """
        self._end_offsets = end_offsets
        self.interval_s = interval_s
        self.metrics = metrics
        self.group = group
        self.logical = dict(logical)
        self.owned = owned
        self._admin_factory = admin_factory
        self._admin: Any = None

    def poll_once(self) -> dict[TopicPartition, int]:
        """One blocking poll; sets the gauges and returns the lag per partition."""
        tps = sorted(
            (tp for tp in self.owned() if tp.topic in self.logical),
            key=lambda tp: (tp.topic, tp.partition),
        )
        if not tps:
            return {}
        if self._admin is None:
            self._admin = self._admin_factory()
        admin = self._admin
        if self._end_offsets is not None:
            end = {tp: int(o) for tp, o in self._end_offsets(tps).items()}
        else:
            latest = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST))
            end = {tp: int(o.offset) for tp, o in latest.items()}
        committed_raw = admin.list_group_offsets({self.group: tps}).get(self.group, {})
        committed = {tp: int(meta.offset) for tp, meta in committed_raw.items()}
        earliest: dict[TopicPartition, int] = {}
        if any(committed.get(tp, -1) < 0 for tp in tps):
            missing = [tp for tp in tps if committed.get(tp, -1) < 0]
            earliest = {
                tp: int(o.offset)
                for tp, o in admin.list_partition_offsets(
                    dict.fromkeys(missing, OffsetSpec.EARLIEST)
                ).items()
            }
        lag = compute_lag(end, committed, earliest)
        for tp, value in lag.items():
            self.metrics.consumer_lag.labels(self.logical[tp.topic], str(tp.partition)).set(value)
        return lag

    async def run(self) -> None:
        """Poll every ``lag_poll_interval_s`` on a helper thread until cancelled."""
        interval = self.interval_s
        if interval <= 0:
            return
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await loop.run_in_executor(None, self.poll_once)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Lag is advisory: a broker hiccup must never stop the worker.
                    self.metrics.lag_polls.labels("error").inc()
                    log.warning("consumer-lag poll failed: %r", exc)
                    self.close()
                else:
                    self.metrics.lag_polls.labels("ok").inc()
                await asyncio.sleep(interval)
        finally:
            self.close()

    def close(self) -> None:
        """Close the admin client (a later poll opens a new one)."""
        if self._admin is not None:
            admin, self._admin = self._admin, None
            try:
                admin.close()
            except Exception:
                log.debug("closing the lag admin client failed", exc_info=True)
