"""What every agent shares: the retrying stage runner and the dead-letter sink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

from promptrec.events.exceptions import ReasonCode
from promptrec.events.schemas import DeadLetter, to_json_bytes
from promptrec.observability.metrics import Metrics
from promptrec.streams.retry import Backoff, retry
from promptrec.streams.topics import TopicNames

__all__ = ["DeadLetters", "RawRecord", "StageFailed", "StageRunner"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StageFailed(Exception):
    """A batch stage kept failing after its retries."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} failed: {type(cause).__name__}: {cause}")
        self.stage = stage


class StageRunner:
    """Runs batch stages on the engine thread, retrying failures with backoff.

    Args:
        executor: The engine's single thread (all model and index work runs there).
        metrics: ``promptrec_stage_retries_total{stage}`` is counted here.
        faults: ``fault_injection`` (a testing aid): stage -> number of runs that fail.
        retries: Retries after the first failure, before :class:`StageFailed`.
    """

    backoff = Backoff(first=0.1, factor=4.0)

    def __init__(
        self,
        executor: Executor,
        metrics: Metrics,
        faults: dict[str, int] | None = None,
        retries: int = 3,
    ) -> None:
        self.executor = executor
        self.metrics = metrics
        self.retries = retries
        self._faults = dict(faults or {})

    async def run(
        self, stage: str, fn: Callable[..., T], *args: Any, executor: Executor | None = None
    ) -> T:
        """``fn(*args)`` on the engine thread (or ``executor``), retried; else StageFailed."""
        loop = asyncio.get_running_loop()
        pool = executor or self.executor

        async def attempt() -> T:
            self._inject_fault(stage)
            return await loop.run_in_executor(pool, fn, *args)

        def failed(n: int, exc: BaseException, delay: float) -> None:
            self.metrics.retries.labels(stage).inc()
            log.warning("%s failed (%r); retry %d in %.1f s", stage, exc, n, delay)

        try:
            return await retry(
                attempt, attempts=self.retries + 1, backoff=self.backoff, on_retry=failed
            )
        except Exception as exc:
            log.exception("%s failed %d times; dead-lettering the batch", stage, self.retries + 1)
            raise StageFailed(stage, exc) from exc

    def _inject_fault(self, stage: str) -> None:
        """Fail the first N runs of a stage (``PROMPTREC_FAULT_INJECTION``)."""
        left = self._faults.get(stage, 0)
        if left > 0:
            self._faults[stage] = left - 1
            raise RuntimeError(f"injected fault in stage {stage!r} ({left - 1} left)")


class RawRecord(Protocol):
    """What a dead-letter record is built from (an inbound event, a catalog record, ...)."""

    @property
    def topic(self) -> str: ...  # logical name
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class DeadLetters:
    """Publishes dead-letter records: the original bytes and key, the reason, the worker.

    Args:
        send: Sends one keyed record to the dead-letter topic and waits until it is queued.
        names: Turns a record's logical topic back into the topic it was read from.
        worker: This worker's name, stored in every record.
        max_bytes: Raw bytes kept per record (longer values are cut and flagged).
        metrics: ``promptrec_dead_letters_total`` and ``promptrec_events_total`` are counted.
    """

    def __init__(
        self,
        send: Callable[[bytes | None, bytes], Any],
        names: TopicNames,
        worker: str,
        max_bytes: int,
        metrics: Metrics,
    ) -> None:
        self._send = send
        self.names = names
        self.worker = worker
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def send(self, record: RawRecord, reason: ReasonCode, detail: str) -> None:
        """Dead-letter one record."""
        letter = DeadLetter.build(
            topic=self.names.resolve(record.topic),
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=reason,
            detail=detail,
            worker=self.worker,
            max_bytes=self.max_bytes,
        )
        await self._send(record.key, to_json_bytes(letter))
        self.metrics.dead_letters.labels(record.topic, str(reason)).inc()
        self.metrics.events.labels(record.topic, "dead_letter").inc()
