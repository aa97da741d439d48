"""The small base class of the agents and what the event agents share around it."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import faiss
import faust
import torch
from faust.streams import _current_event

from promptrec.serving.batches import HistoryWrite, Inbound
from promptrec.streams.agents.context import AgentContext

__all__ = ["AckWhenDone", "Agent", "inbound_of", "set_threads", "write_histories"]


log = logging.getLogger(__name__)


def set_threads(n: int) -> None:
    """torch and FAISS threads of the engine thread's next job (cheap: ~0.3 us)."""
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def inbound_of(event: faust.EventT, logical: dict[str, str]) -> Inbound[faust.EventT]:
    """The domain's view of a Faust event (logical topic, position, raw key and value)."""
    msg = event.message
    return Inbound(logical[msg.topic], msg.partition, msg.offset, msg.key, msg.value, event)


def write_histories(ctx: AgentContext, writes: Sequence[HistoryWrite[faust.EventT]]) -> None:
    """Store history values; each write goes to the changelog partition of its user's event."""
    for user_id, value, inbound in writes:
        # Table writes go to the changelog partition of the *current* event: an event of this
        # user (same key, same partition), not the batch's last one.
        _current_event.set(weakref.ref(inbound.ref))
        ctx.history[user_id] = value


class AckWhenDone:
    """Context manager: a micro-batch's events are acknowledged only if its block completes.

    Faust's ``take_events`` acknowledges a batch in a ``finally`` as soon as the batch is left,
    also when the agent was cancelled or raised inside it. Faust's shutdown cancels the agent
    task wherever it is (``mode`` stops futures with a zero timeout), so a SIGTERM that lands
    while a batch awaits its stage or its publish acknowledged events whose recommendations
    were never published; the consumer then committed past them and the successor never saw
    them (64 events lost, one batch, in ``tests/streams/test_watchdog.py``). Inside the block
    each message holds one more reference, so ``take_events``' acknowledgement is not the final
    one; a block that completes drops it, one that does not leaves the events unacknowledged:
    the committed offset stays below them and they are delivered again.

    Args:
        events: The batch, as ``take_events`` yielded it.
        agent: The agent's role, for the log line of an abandoned batch.
    """

    __slots__ = ("agent", "events")

    def __init__(self, events: Sequence[faust.EventT], agent: str) -> None:
        self.events = events
        self.agent = agent

    def __enter__(self) -> None:
        for event in self.events:
            event.message.incref()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            for event in self.events:
                event.ack()  # the last reference is take_events' own: it acknowledges
            return
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for event in self.events:
            msg = event.message
            low, high = spans.get((msg.topic, msg.partition), (msg.offset, msg.offset))
            spans[msg.topic, msg.partition] = (min(low, msg.offset), max(high, msg.offset))
        where = ", ".join(f"{t}[{p}] {lo}..{hi}" for (t, p), (lo, hi) in sorted(spans.items()))
        log.warning(
            "%s batch of %d events (%s) left unfinished (%r): not acknowledged, so they are "
            "delivered again",
            self.agent, len(self.events), where, exc,
        )  # fmt: skip


class Agent:
    """An agent of the worker: it gets the shared context and registers itself on the app."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.within = ctx.settings.batch_within_ms / 1000.0  # micro-batch time limit

    def register(self) -> None:
        """Add the agent's streams, tasks and timers to ``ctx.app``."""
        raise NotImplementedError

    def raw_topic(self, *names: str) -> faust.TopicT:
        """A topic of raw bytes (keys and values): the agents decode records themselves."""
        return self.ctx.app.topic(*names, key_serializer="raw", value_serializer="raw")

    def agent_name(self, role: str) -> str:
        """The Faust agent name (the app id keeps workers of different apps apart)."""
        return f"{self.ctx.app.conf.id}.{role}"

    async def follow(self, reader: Any, what: str) -> None:
        """Run a per-worker topic reader for the life of the worker; crash the worker if it fails.

        A reader that stopped would leave the worker serving stale state; a restart replays.
        """
        try:
            await reader.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s reader failed; the worker stops so it can be restarted", what)
            await self.ctx.app.crash(RuntimeError(f"{what} reader failed"))  # type: ignore[attr-defined]
