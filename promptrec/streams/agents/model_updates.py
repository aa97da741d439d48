"""Model updates: rebuild the head from the ``model-updates`` topic, merge peers, publish ours."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from promptrec.encoder import ScoringHead
from promptrec.events.exceptions import InvalidEvent
from promptrec.serving.arms import Arms
from promptrec.serving.batches import Inbound
from promptrec.serving.engine import base_head
from promptrec.serving.experiments import Experiments
from promptrec.serving.model_sync import HeadSync, HeadUpdate
from promptrec.streams.agents.base import Agent
from promptrec.streams.agents.context import AgentContext
from promptrec.streams.agents.stages import StageFailed
from promptrec.streams.followers import TopicFollower

__all__ = ["ModelUpdateReader", "ModelUpdates", "arm_of_key", "sync_key"]

log = logging.getLogger(__name__)

# Separates an experiment arm from the incarnation id in a model-updates key ("arm/host:pid:id").
# Host names never contain it, so keys of workers without experiments have no arm part.
_ARM_SEP = "/"


def sync_key(experiments: Experiments, arm: str, incarnation: str) -> str:
    """The model-updates key of one arm's head (the bare incarnation without an experiment)."""
    return f"{arm}{_ARM_SEP}{incarnation}" if experiments.active else incarnation


def arm_of_key(key: str) -> str:
    """The arm whose head a model-updates record changes (``default`` for a bare key)."""
    arm, sep, _ = key.partition(_ARM_SEP)
    return arm if sep else "default"


class ModelUpdateReader(TopicFollower):
    """Applies every other incarnation's head updates on the engine thread.

    When the topic holds records at start, the head is first reset to the common base (the
    checkpoint's fine-tuned head, else the fresh seeded head: :func:`base_head`), because the
    replay re-applies every published change, including the ones a disk-restored head already
    contains; the disk checkpoint is only the fallback for an empty
    topic (a broker that lost its data). Once caught up it opens ``ctx.readiness.model``.
    """

    name = "model-sync"

    def __init__(self, ctx: AgentContext, arms: Arms, syncs: Mapping[str, HeadSync]) -> None:
        super().__init__(ctx.settings, [ctx.names.model_updates])
        self.ctx = ctx
        self.arms = arms
        self.syncs = dict(syncs)
        self.sync = self.syncs[arms.first.arm.name]  # the first arm's (version gauge)
        self.replayed = 0

    async def replay_starting(self, records: int) -> None:
        """Reset every arm's head to its base when there is a history of updates to replay."""
        if records == 0:
            return
        for name, sync in self.syncs.items():
            engine = self.arms.states[name].engine
            head = engine.head
            base = base_head(engine.encoder_settings, head.dim)
            if base.hidden != head.hidden:
                log.warning(
                    "restored head has hidden=%d, settings say %d", head.hidden, base.hidden
                )
                base = ScoringHead(head.dim, hidden=head.hidden, learning_rate=head.learning_rate)
            await self.ctx.stages.run("sync", sync.rebase, base)
        log.info("rebuilding the scoring head from %d model updates", records)

    async def handle(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        """Decode and merge; an unusable record is dead-lettered and skipped."""
        ctx = self.ctx
        for m in messages:
            try:
                update = HeadUpdate.from_bytes(m.value)
                sync = self.syncs.get(arm_of_key(update.key))
                if sync is None:  # an arm this worker does not serve (another experiment)
                    continue
                outcome = await ctx.stages.run("sync", _apply, sync, update)
                if isinstance(outcome, InvalidEvent):
                    raise outcome
            except InvalidEvent as exc:
                record = Inbound("model-updates", tp.partition, m.offset, m.key, m.value, None)
                await ctx.dead.send(record, exc.reason, exc.detail)
                continue
            except Exception as exc:  # StageFailed: the engine thread kept failing
                log.warning("model update at %s:%d not applied: %s", tp, m.offset, exc)
                continue
            if outcome:
                self.replayed += 1
                ctx.metrics.model_updates_applied.inc()
        ctx.metrics.model_version.set(self.sync.version)

    async def caught_up(self) -> None:
        """The head now holds every published update: the worker may serve."""
        log.info(
            "model replay complete: version %d from %d peers", self.sync.version, self.sync.peers
        )
        self.ctx.metrics.model_version.set(self.sync.version)
        self.ctx.readiness.model.set()


def _apply(sync: HeadSync, update: HeadUpdate) -> bool | InvalidEvent:
    """:meth:`HeadSync.apply`, its rejection returned: retrying a misfit update cannot help."""
    try:
        return sync.apply(update)
    except InvalidEvent as exc:
        return exc


class ModelUpdates(Agent):
    """The model-updates reader task and the timer that publishes this worker's head changes."""

    def __init__(self, ctx: AgentContext, arms: Arms, syncs: Mapping[str, HeadSync]) -> None:
        super().__init__(ctx)
        self.syncs = dict(syncs)
        self.sync = self.syncs[arms.first.arm.name]
        self.reader = ModelUpdateReader(ctx, arms, syncs)
        self.topic = self.raw_topic(ctx.names.model_updates)

    def register(self) -> None:
        """The reader task and the sync timer."""
        self.ctx.app.task(self.reader_task)
        self.ctx.app.timer(self.ctx.settings.model_sync_interval_s)(self.sync_timer)

    async def reader_task(self) -> None:
        """Follow the model-updates topic for the life of the worker."""
        await self.follow(self.reader, "model-updates")

    async def sync_timer(self) -> None:
        """Publish each arm's head changes, then count them once the broker has them."""
        if not self.ctx.readiness.model.is_set():
            return
        for sync in self.syncs.values():
            await self._publish(sync)

    async def _publish(self, sync: HeadSync) -> None:
        ctx = self.ctx
        try:
            update = await ctx.stages.run("sync", sync.pending)
        except StageFailed:
            return
        if update is None:
            return
        t0 = time.perf_counter()
        try:
            fut = await self.topic.send(key=update.key.encode(), value=update.to_bytes())
            await fut  # the broker's ack: only then does the update count in the version
        except Exception:
            # The timer is the retry: the same changes go out with the next interval's update.
            log.exception("publishing the head update failed; retrying next interval")
            ctx.metrics.retries.labels("sync").inc()
            return
        await ctx.stages.run("sync", sync.published, update.seq)
        ctx.metrics.stage_latency.labels("sync").observe(time.perf_counter() - t0)
        ctx.metrics.model_version.set(self.sync.version)
