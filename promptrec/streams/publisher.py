"""Publishing recommendations: JSON built once per batch, sent by a batching producer.

The worker's Faust producer must send one record per batch on the embedded broker (its end
offsets count batches, which would break changelog recovery), but the recommendations topic has
no such constraint, so it gets its own aiokafka producer with real batches. A batch of
recommendations is awaited until the broker has acknowledged it, before the agent acknowledges
the input events; Faust commits offsets only after that, which keeps delivery at least once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka.errors import KafkaError

from promptrec.serving.explain import Explanation, item_entries
from promptrec.streams.clients import make_aio_producer
from promptrec.streams.retry import Backoff, retry
from promptrec.streams.settings import StreamSettings

__all__ = ["RecommendationPublisher", "recommendation_json"]

log = logging.getLogger(__name__)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def recommendation_json(
    recommendation_id: str,
    user_id: str,
    items: Sequence[tuple[str, float]],
    model_version: int,
    source: str,
    source_event_id: str,
    source_ts: int,
    generated_at: int,
    worker: str,
    *,
    item_id: str | None = None,
    explanations: Sequence[Explanation] | None = None,
    experiment: str | None = None,
    arm: str | None = None,
) -> bytes:
    """One ``recommendations`` record (the :class:`~promptrec.events.schemas.Recommendation`
    schema), serialised without building a pydantic model on the hot path.

    The optional parts (``item_id`` of a similar-items answer, explanations, the experiment arm)
    are left out of the JSON when unset, so a plain answer keeps its bytes; the key order is the
    pydantic model's.
    """
    record: dict[str, Any] = {"recommendation_id": recommendation_id}
    if user_id:
        record["user_id"] = user_id
    if item_id is not None:
        record["item_id"] = item_id
    record["items"] = item_entries(items, explanations)
    record["model_version"] = model_version
    record["source"] = source
    record["source_event_id"] = source_event_id
    record["source_ts"] = source_ts
    record["generated_at"] = generated_at
    record["worker"] = worker
    if experiment is not None:
        record["experiment"] = experiment
        record["arm"] = arm
    return _dumps(record).encode("utf-8")


class RecommendationPublisher:
    """Sends batches of keyed records to one topic and waits for the broker's acks.

    A failed send is retried with backoff until it succeeds: the input events stay unacknowledged
    meanwhile, so nothing is lost, and a broker outage shows as latency, not as missing answers.
    """

    backoff = Backoff(first=0.1, factor=2.0, cap=5.0)

    def __init__(self, settings: StreamSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = make_aio_producer(
                    self.settings,
                    linger_ms=0,  # records queue up while a request is in flight anyway
                    max_batch_size=self.settings.recommendations_batch_bytes,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def publish_many(self, records: Sequence[tuple[bytes, bytes]]) -> int:
        """Send ``(key, value)`` records; returns the number of retries it took."""
        retries = 0

        async def attempt() -> None:
            producer = await self._started()
            futures = [
                await producer.send(self.topic, value=value, key=key) for key, value in records
            ]
            await asyncio.gather(*futures)

        def failed(n: int, exc: BaseException, delay: float) -> None:
            nonlocal retries
            retries = n
            log.warning("publishing %d recommendations failed (%r); retry in %.1f s",
                        len(records), exc, delay)  # fmt: skip

        await retry(attempt, attempts=None, backoff=self.backoff, retry_on=(KafkaError,),
                    on_retry=failed)  # fmt: skip
        return retries

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
