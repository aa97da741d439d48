"""Follows the ``model-updates`` topic: rebuilds the head at start, then merges peers' updates."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from promptrec.encoder import ScoringHead
from promptrec.events.exceptions import InvalidEvent
from promptrec.serving.model_sync import HeadSync, HeadUpdate
from promptrec.streams.catalog_reader import TopicFollower
from promptrec.streams.topics import TopicNames

if TYPE_CHECKING:
    from promptrec.streams.agents import Pipeline

__all__ = ["ModelUpdateReader"]

log = logging.getLogger(__name__)


class ModelUpdateReader(TopicFollower):
    """Applies every other incarnation's head updates on the engine thread.

    When the topic holds records at start, the head is first reset to the common base (the fresh
    seeded head), because the replay re-applies every published change, including the ones a
    disk-restored head already contains; the disk checkpoint is only the fallback for an empty
    topic (a broker that lost its data).
    """

    name = "model-sync"

    def __init__(self, pipeline: Pipeline) -> None:
        names = TopicNames.from_settings(pipeline.settings)
        super().__init__(pipeline.settings, [names.model_updates])
        self.pipeline = pipeline
        self.replayed = 0

    async def replay_starting(self, records: int) -> None:
        """Reset to the base head when there is a history of updates to replay."""
        if records == 0:
            return
        p = self.pipeline
        head = p.engine.head
        base = ScoringHead.from_settings(head.dim, p.engine.encoder_settings)
        if base.hidden != head.hidden:
            log.warning("restored head has hidden=%d, settings say %d", head.hidden, base.hidden)
            base = ScoringHead(head.dim, hidden=head.hidden, learning_rate=head.learning_rate)
        await p._run("sync", p.sync.rebase, base)
        log.info("rebuilding the scoring head from %d model updates", records)

    async def handle(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        """Decode and merge; an unusable record is dead-lettered and skipped."""
        p = self.pipeline
        for m in messages:
            try:
                update = HeadUpdate.from_bytes(m.value)
                outcome = await p._run("sync", _apply, p.sync, update)
                if isinstance(outcome, InvalidEvent):
                    raise outcome
                applied = outcome
            except InvalidEvent as exc:
                await p._dead("model-updates", _Raw(tp, m), exc.reason, exc.detail)
                continue
            except Exception as exc:  # StageFailed: the engine thread kept failing
                log.warning("model update at %s:%d not applied: %s", tp, m.offset, exc)
                continue
            if applied:
                self.replayed += 1
                p.metrics.model_updates_applied.inc()
        p.metrics.model_version.set(p.sync.version)

    async def caught_up(self) -> None:
        """The head now holds every published update: the worker may serve."""
        p = self.pipeline
        log.info("model replay complete: version %d from %d peers", p.sync.version, p.sync.peers)
        p.metrics.model_version.set(p.sync.version)
        p.model_ready.set()


def _apply(sync: HeadSync, update: HeadUpdate) -> bool | InvalidEvent:
    """:meth:`HeadSync.apply`, its rejection returned: retrying a misfit update cannot help."""
    try:
        return sync.apply(update)
    except InvalidEvent as exc:
        return exc


class _Raw:
    """The fields :meth:`Pipeline._dead` reads from a record."""

    def __init__(self, tp: TopicPartition, m: ConsumerRecord[Any, Any]) -> None:
        self.topic = tp.topic
        self.partition = tp.partition
        self.offset = m.offset
        self.key = m.key
        self.value = m.value
