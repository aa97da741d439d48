"""The explicit state the agents share, and the worker's one readiness gate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from promptrec.events.schemas import Limits
from promptrec.observability.metrics import Metrics
from promptrec.serving.engine import Engine
from promptrec.streams.agents.stages import DeadLetters, StageRunner
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["AgentContext", "Readiness"]

log = logging.getLogger(__name__)


class Readiness:
    """When the event agents may serve: after the catalog and the model-updates replays.

    There is one deadline for both replays, ``timeout_s`` after the first :meth:`wait`: once it
    has passed the agents serve anyway (a stale catalog or head beats no answers), but the worker
    does not claim to be ready (``/readyz``) until both replays are complete.

    Args:
        timeout_s: ``PROMPTREC_CATALOG_READY_TIMEOUT_S``.
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.catalog = asyncio.Event()  # catalog replay done
        self.model = asyncio.Event()  # model-updates replay done
        self._clock = clock
        self._deadline: float | None = None

    @property
    def replayed(self) -> bool:
        """Both replays are complete: the worker serves up-to-date answers."""
        return self.catalog.is_set() and self.model.is_set()

    @property
    def serving(self) -> bool:
        """The event agents serve: both replays are done, or the deadline has passed."""
        return self.replayed or (self._deadline is not None and self.remaining() == 0.0)

    def start(self) -> None:
        """Start the deadline (idempotent: every waiter shares the first start)."""
        if self._deadline is None:
            self._deadline = self._clock() + self.timeout_s

    def remaining(self) -> float:
        """Seconds left until the deadline (the full timeout before :meth:`start`)."""
        if self._deadline is None:
            return self.timeout_s
        return max(0.0, self._deadline - self._clock())

    async def wait(self) -> bool:
        """Wait for both replays or the deadline; True when both replays are complete."""
        self.start()
        if self.replayed:
            return True
        try:
            await asyncio.wait_for(self._both(), timeout=self.remaining())
        except TimeoutError:
            log.warning(
                "replay not finished after %.0f s (catalog %s, model %s); serving anyway",
                self.timeout_s,
                "done" if self.catalog.is_set() else "pending",
                "done" if self.model.is_set() else "pending",
            )
            return False
        return True

    async def _both(self) -> None:
        await self.catalog.wait()
        # Serving before the head is rebuilt would publish an older model version.
        await self.model.wait()


@dataclass
class AgentContext:
    """Everything the agents share, passed to each of them explicitly.

    Attributes:
        app: The worker's Faust app (agents, topics, timers register on it).
        settings: The worker's settings.
        engine: Encoder, index, head and the engine thread.
        metrics: The worker's Prometheus metrics.
        names: Full topic names.
        logical: Full topic name -> logical name (metric labels, dispatch).
        limits: Decoding limits.
        worker_name: ``host:pid``, stored in every published record.
        stages: Runs batch stages on the engine thread, with retries.
        dead: The dead-letter sink.
        readiness: The replay gate of the event agents and ``/readyz``.
        history: The changelogged per-user history table (user id -> JSON value).
    """

    app: faust.App
    settings: StreamSettings
    engine: Engine
    metrics: Metrics
    names: TopicNames
    logical: dict[str, str]
    limits: Limits
    worker_name: str
    stages: StageRunner
    dead: DeadLetters
    readiness: Readiness
    history: MutableMapping[str, Any]
