"""The recommendation agent: interactions and requests -> history -> candidates -> head -> top-K."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence

import faust

from promptrec.events.exceptions import ReasonCode
from promptrec.serving.batches import RecommendPlan, RecommendPlanner
from promptrec.serving.learner import OnlineLearner
from promptrec.serving.recommender import Query, RecommendBatch, Recommender
from promptrec.streams.agents.base import Agent, inbound_of, set_threads, write_histories
from promptrec.streams.agents.context import AgentContext
from promptrec.streams.agents.stages import StageFailed
from promptrec.streams.publisher import RecommendationPublisher, recommendation_json

__all__ = ["RecommendAgent"]


class RecommendAgent(Agent):
    """Answers every interaction and request with a recommendation.

    A batch's history changes and popularity clicks take effect only once its recommend stage
    has succeeded; a failed batch is dead-lettered with every user's state untouched.
    """

    def __init__(
        self,
        ctx: AgentContext,
        recommender: Recommender,
        learner: OnlineLearner,
        publisher: RecommendationPublisher,
    ) -> None:
        super().__init__(ctx)
        self.recommender = recommender
        self.learner = learner
        self.publisher = publisher
        self.planner = RecommendPlanner(
            ctx.settings, ctx.limits, ctx.engine.index, ctx.engine.index_settings.filter_key_set
        )
        self.topic = self.raw_topic(ctx.names.interactions, ctx.names.requests)

    def register(self) -> None:
        """The agent on the interactions and requests topics."""
        self.ctx.app.agent(self.topic, name=self.agent_name("recommend"))(self.run)

    async def run(self, stream: faust.StreamT) -> None:
        """Wait for the replays (or the ready deadline), then answer micro-batches."""
        await self.ctx.readiness.wait()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.ctx.settings.batch_size, within=self.within
        ):
            await self.batch(events)

    async def batch(self, events: Sequence[faust.EventT]) -> None:
        """Plan, recommend, then commit state and publish; failures are dead-lettered."""
        ctx, m = self.ctx, self.ctx.metrics
        m.batch_size.labels("recommend").observe(len(events))
        t0 = time.perf_counter()
        logical = ctx.logical
        plan = self.planner.plan(
            [inbound_of(e, logical) for e in events], ctx.history.get, int(time.time() * 1000)
        )
        if plan.redeliveries:
            m.redeliveries.inc(plan.redeliveries)
        m.stage_latency.labels("decode").observe(time.perf_counter() - t0)
        for rejected in plan.rejected:
            await ctx.dead.send(rejected.inbound, rejected.reason, rejected.detail)
        if not plan.asks:
            return
        queries = [ask.query for ask in plan.asks]
        try:
            result = await ctx.stages.run("recommend", self._recommend, queries, plan.clicks)
        except StageFailed as exc:
            for ask in plan.asks:
                await ctx.dead.send(ask.inbound, ReasonCode.processing_error, str(exc))
            return
        # The stage succeeded (and counted the clicks): the history changes take effect now. No
        # await between the commit's reads and its writes, so the feedback agent cannot
        # interleave with them.
        write_histories(ctx, plan.commit(ctx.history.get))
        # Requests the compute could not answer (a similar-items seed deleted meanwhile).
        for i, err in result.rejected.items():
            await ctx.dead.send(plan.asks[i].inbound, err.reason, err.detail)
        answered = Counter(
            ask.inbound.topic for i, ask in enumerate(plan.asks) if i not in result.rejected
        )
        for topic, count in answered.items():
            m.events.labels(topic, "ok").inc(count)
        for stage, seconds in result.timings.items():
            m.stage_latency.labels(stage).observe(seconds)
        await self._publish(plan, result)

    def _recommend(self, queries: list[Query], clicks: list[str]) -> RecommendBatch:
        set_threads(self.ctx.settings.compute_threads)
        result = self.recommender.recommend_many(queries)
        # Last, and only once the answers exist: a failed (and retried) attempt counts nothing.
        self.ctx.engine.popularity.add_many(clicks)
        return result

    async def _publish(self, plan: RecommendPlan[faust.EventT], result: RecommendBatch) -> None:
        ctx, m = self.ctx, self.ctx.metrics
        t1 = time.perf_counter()
        version = ctx.engine.head.version
        generated = int(time.time() * 1000)
        records: list[tuple[bytes, bytes]] = []
        strategies = Counter[tuple[str, str]]()
        explanations = result.explanations or [None] * len(plan.asks)
        for i, ask in enumerate(plan.asks):
            if i in result.rejected:
                continue
            rec_id = uuid.uuid4().hex
            query = ask.query
            user_id = query.user_id
            # A similar-items answer without a user is keyed by its seed item.
            key = user_id or query.item_id or ""
            records.append(
                (
                    key.encode(),
                    recommendation_json(
                        rec_id,
                        user_id,
                        result.items[i],
                        version,
                        ask.source,
                        ask.source_id,
                        ask.ts,
                        generated,
                        ctx.worker_name,
                        item_id=query.item_id,
                        explanations=explanations[i],
                    ),
                )
            )
            if result.strategies[i] == "model":
                self.learner.remember(rec_id, result.users[i])
            strategies[ask.source, result.strategies[i]] += 1
        retries = await self.publisher.publish_many(records)
        if retries:
            m.retries.labels("publish").inc(retries)
        now = time.time()
        for (source, strategy), count in strategies.items():
            m.recommendations.labels(source, strategy).inc(count)
        for ask in plan.asks:
            m.e2e_latency.observe(max(0.0, now - ask.ts / 1000.0))
        m.stage_latency.labels("publish").observe(time.perf_counter() - t1)
        m.popularity_clicks.set(ctx.engine.popularity.clicks)
