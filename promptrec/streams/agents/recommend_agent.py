"""The recommendation agent: interactions and requests -> history -> candidates -> head -> top-K."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import faust

from promptrec.events.exceptions import ReasonCode
from promptrec.serving.arms import Arms, ArmState
from promptrec.serving.batches import Ask, RecommendPlan, RecommendPlanner
from promptrec.serving.explain import Explanation
from promptrec.serving.recommender import Query, RecommendBatch
from promptrec.streams.agents.base import (
    AckWhenDone,
    Agent,
    inbound_of,
    set_threads,
    write_histories,
)
from promptrec.streams.agents.context import AgentContext
from promptrec.streams.agents.stages import StageFailed
from promptrec.streams.publisher import (
    RecommendationPublisher,
    recommendation_ids,
    recommendation_json,
)

__all__ = ["RecommendAgent"]

# One arm's share of a batch: its state, the positions of its queries, its answers.
_Group = tuple[ArmState, list[int], RecommendBatch]


class RecommendAgent(Agent):
    """Answers every interaction and request with a recommendation.

    A batch's history changes and popularity clicks take effect only once its recommend stage
    has succeeded; a failed batch is dead-lettered with every user's state untouched.
    """

    def __init__(self, ctx: AgentContext, arms: Arms, publisher: RecommendationPublisher) -> None:
        super().__init__(ctx)
        self.arms = arms
        self.publisher = publisher
        self.planner = RecommendPlanner(
            ctx.settings, ctx.limits, ctx.engine.index, ctx.engine.index_settings.filter_key_set
        )
        self.topic = self.raw_topic(ctx.names.interactions, ctx.names.requests)
        self.new_id = recommendation_ids()

    def register(self) -> None:
        """The agent on the interactions and requests topics."""
        self.ctx.app.agent(self.topic, name=self.agent_name("recommend"))(self.run)

    async def run(self, stream: faust.StreamT) -> None:
        """Wait for the replays (or the ready deadline), then answer micro-batches."""
        await self.ctx.readiness.wait()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.ctx.settings.batch_size, within=self.within
        ):
            with AckWhenDone(events, "recommend"):
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
        failed = {pos[j]: err for _, pos, b in result for j, err in b.rejected.items()}
        for i, err in failed.items():
            await ctx.dead.send(plan.asks[i].inbound, err.reason, err.detail)
        answered = Counter(ask.inbound.topic for i, ask in enumerate(plan.asks) if i not in failed)
        for topic, count in answered.items():
            m.events.labels(topic, "ok").inc(count)
        timings = Counter[str]()
        for _, _, b in result:
            timings.update(b.timings)
        for stage, seconds in timings.items():
            m.stage_latency.labels(stage).observe(seconds)
        await self._publish(plan, result)

    def _recommend(self, queries: list[Query], clicks: list[str]) -> list[_Group]:
        set_threads(self.ctx.settings.compute_threads)
        arms = self.arms
        if len(arms.states) == 1:
            groups = [(arms.first, list(range(len(queries))))]
        else:
            # One recommend_many (one FAISS search) per arm present in the batch.
            by_arm: dict[str, list[int]] = {}
            for i, state in enumerate(arms.of_users([q.user_id for q in queries])):
                by_arm.setdefault(state.arm.name, []).append(i)
            groups = [(arms.states[name], pos) for name, pos in by_arm.items()]
        out = [
            (state, pos, state.recommender.recommend_many([queries[i] for i in pos]))
            for state, pos in groups
        ]
        # Last, and only once the answers exist: a failed (and retried) attempt counts nothing.
        self.ctx.engine.popularity.add_many(clicks)
        return out

    async def _publish(self, plan: RecommendPlan[faust.EventT], result: list[_Group]) -> None:
        ctx, m = self.ctx, self.ctx.metrics
        t1 = time.perf_counter()
        generated = int(time.time() * 1000)
        records: list[tuple[bytes, bytes]] = []
        strategies = Counter[tuple[str, str]]()
        per_arm = Counter[str]()
        experiment = self.arms.experiments.name if self.arms.active else None
        for state, positions, batch in result:
            version = state.engine.head.version
            arm = state.arm.name if experiment is not None else None
            explanations = batch.explanations or [None] * len(positions)
            for j, i in enumerate(positions):
                if j in batch.rejected:
                    continue
                ask = plan.asks[i]
                rec_id = self.new_id()
                records.append(
                    (_key(ask.query), self._record(rec_id, ask, batch.items[j], version,
                                                   generated, explanations[j], experiment, arm))
                )  # fmt: skip
                if batch.strategies[j] == "model":
                    state.learner.remember(rec_id, batch.users[j])
                strategies[ask.source, batch.strategies[j]] += 1
                per_arm[state.arm.name] += 1
        retries = await self.publisher.publish_many(records)
        if retries:
            m.retries.labels("publish").inc(retries)
        now = time.time()
        for (source, strategy), count in strategies.items():
            m.recommendations.labels(source, strategy).inc(count)
        for arm_name, count in per_arm.items():
            m.arm_recommendations.labels(arm_name).inc(count)
        for ask in plan.asks:
            m.e2e_latency.observe(max(0.0, now - ask.ts / 1000.0))
        m.stage_latency.labels("publish").observe(time.perf_counter() - t1)
        m.popularity_clicks.set(ctx.engine.popularity.clicks)

    def _record(
        self,
        rec_id: str,
        ask: Ask[faust.EventT],
        items: list[tuple[str, float]],
        version: int,
        generated: int,
        explanations: list[Explanation] | None,
        experiment: str | None,
        arm: str | None,
    ) -> bytes:
        query = ask.query
        return recommendation_json(
            rec_id,
            query.user_id,
            items,
            version,
            ask.source,
            ask.source_id,
            ask.ts,
            generated,
            self.ctx.worker_name,
            item_id=query.item_id,
            explanations=explanations,
            experiment=experiment,
            arm=arm,
        )


def _key(query: Query) -> bytes:
    """The answer's Kafka key: the user, or the seed item of a similar-items request without one."""
    return (query.user_id or query.item_id or "").encode()
