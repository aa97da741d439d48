"""The catalog agent: items and user profiles -> prompts -> encoder (one call a batch) -> index.

Encoding runs on a catalog thread of the engine (the replay's, then a lower-priority one once
recommendations are served), the index update on the engine thread: a batch that takes seconds
to encode never sits in front of a recommendation batch, and FAISS adds stay serialised with
searches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import faust

from promptrec.events.exceptions import ReasonCode
from promptrec.serving.arms import Arms
from promptrec.serving.catalog import CatalogOutcome, CatalogPlan, CatalogRecord, CatalogUpdater
from promptrec.streams.agents.base import Agent, set_threads
from promptrec.streams.agents.context import AgentContext
from promptrec.streams.agents.stages import StageFailed
from promptrec.streams.catalog_reader import CatalogReader

__all__ = ["CatalogAgent"]

log = logging.getLogger(__name__)


class CatalogAgent(Agent):
    """Follows the catalog topics (a per-worker reader, no group) and applies them in batches.

    When the start-up replay is done it opens ``ctx.readiness.catalog``.
    """

    def __init__(self, ctx: AgentContext, arms: Arms | None = None) -> None:
        super().__init__(ctx)
        engines = arms.distinct_engines() if arms is not None else [ctx.engine]
        # One updater per distinct (item index, profile store): an item is encoded once per
        # distinct item template and checkpoint; a store shared by two updaters sees the second
        # one's content tag unchanged and is not encoded again.
        self.updaters = [CatalogUpdater(engine, ctx.limits) for engine in engines]
        self.updater = self.updaters[0]
        self.channel = ctx.app.channel(maxsize=10_000)
        self.reader = CatalogReader(ctx.settings, ctx.names, self.channel)
        self._encode_threads = ctx.engine.encoder_settings.encode_threads()
        self._child_lowered = False

    def register(self) -> None:
        """The agent on the in-memory channel and the reader task that feeds it."""
        self.ctx.app.agent(self.channel, name=self.agent_name("catalog"))(self.run)
        self.ctx.app.task(self.reader_task)

    async def run(self, stream: faust.StreamT) -> None:
        """Apply catalog records in batches; the replay marker opens the readiness gate."""
        ctx = self.ctx
        async for records in stream.take(ctx.settings.batch_size * 4, within=self.within):
            real = [r for r in records if not r.marker]
            await self._batch(real)
            if any(r.marker for r in records):
                await self._replay_done()
            ctx.metrics.index_items.set(len(ctx.engine.index))

    async def _batch(self, records: list[CatalogRecord]) -> None:
        ctx, m = self.ctx, self.ctx.metrics
        m.batch_size.labels("catalog").observe(len(records))
        t0 = time.perf_counter()
        try:
            # Same records, decoded the same way: the first outcome counts for the metrics.
            outcomes = [await self._apply(updater, records) for updater in self.updaters]
            outcome = outcomes[0]
        except StageFailed as exc:
            for rec in records:
                await ctx.dead.send(rec, ReasonCode.processing_error, str(exc))
            return
        m.stage_latency.labels("catalog").observe(time.perf_counter() - t0)
        for rec, err in outcome.dead:
            await ctx.dead.send(rec, err.reason, err.detail)
        ok = Counter(r.topic for r in records)
        ok.subtract(r.topic for r, _ in outcome.dead)
        # Items whose prompt text did not change were not re-encoded: outcome "skipped".
        skipped = min(outcome.unchanged, max(0, ok["items"]))
        if skipped:
            ok["items"] -= skipped
            m.events.labels("items", "skipped").inc(skipped)
        for topic, count in ok.items():
            if count:
                m.events.labels(topic, "ok").inc(count)

    async def _replay_done(self) -> None:
        ctx = self.ctx
        try:
            removed = await ctx.stages.run("encode", self._finish_replay)
        except StageFailed:  # stale items stay until the next restart; serve anyway
            log.exception("dropping stale catalog items failed")
            removed = 0
        log.info("catalog ready: %d items (%d stale removed)", len(ctx.engine.index), removed)
        ctx.metrics.catalog_ready.set(1)
        ctx.readiness.catalog.set()

    async def _apply(self, updater: CatalogUpdater, records: list[CatalogRecord]) -> CatalogOutcome:
        # One updater after the other, each committed before the next prepares: a profile store
        # shared by two updaters then shows the second one the first one's content tags.
        stages, engine = self.ctx.stages, self.ctx.engine
        # Lower priority only once recommendations are served: the start-up replay runs alone.
        live = self.ctx.readiness.catalog.is_set() or self.ctx.readiness.serving
        executor = engine.encode_executor if live else engine.replay_executor
        if live and engine.encoder_process is not None and not self._child_lowered:
            # The child process, like the catalog thread, yields to the event path once live.
            self._child_lowered = True
            await asyncio.get_running_loop().run_in_executor(
                executor, engine.encoder_process.lower_priority, engine.serving.catalog_nice
            )
        plan = await stages.run("encode", self._prepare, updater, records, executor=executor)
        return await stages.run("encode", self._commit, updater, plan)

    def _prepare(self, updater: CatalogUpdater, records: list[CatalogRecord]) -> CatalogPlan:
        # On the catalog thread. Catalog encoding is bulk work: every core (torch thread counts
        # are per OS thread, so this does not change the engine thread's). The per-event path
        # is not: on a small machine, OpenMP threads spinning for a (64 x 100)-candidate forward
        # starve the event loop and the broker (measured: ~25% less worker CPU per event with 1).
        set_threads(self._encode_threads)
        return updater.prepare(records)

    def _commit(self, updater: CatalogUpdater, plan: CatalogPlan) -> CatalogOutcome:
        # On the engine thread, between searches: milliseconds (FAISS add of the batch).
        set_threads(self.ctx.settings.compute_threads)
        return updater.commit(plan)

    def _finish_replay(self) -> int:
        removed = self.updater.finish_replay()
        for updater in self.updaters[1:]:
            updater.finish_replay()
        return removed

    async def reader_task(self) -> None:
        """Run the per-worker catalog consumer for the life of the worker."""
        await self.follow(self.reader, "catalog")
