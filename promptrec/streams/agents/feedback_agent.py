"""The feedback agent: feedback -> mini-batch online learning of the head."""

from __future__ import annotations

import time
from collections.abc import Sequence

import faust

from promptrec.events.exceptions import ReasonCode
from promptrec.events.schemas import FeedbackEvent
from promptrec.serving.arms import Arms
from promptrec.serving.batches import FeedbackPlanner
from promptrec.serving.learner import LearnOutcome
from promptrec.streams.agents.base import (
    AckWhenDone,
    Agent,
    inbound_of,
    set_threads,
    write_histories,
)
from promptrec.streams.agents.context import AgentContext
from promptrec.streams.agents.stages import StageFailed

__all__ = ["FeedbackAgent"]


class FeedbackAgent(Agent):
    """Learns from feedback; an event counts as learned (in its user's history) only once the
    learn stage has used it, so a failed batch can be replayed from the dead-letter topic."""

    def __init__(self, ctx: AgentContext, arms: Arms) -> None:
        super().__init__(ctx)
        self.arms = arms
        self.planner = FeedbackPlanner(ctx.settings, ctx.limits)
        self.topic = self.raw_topic(ctx.names.feedback)

    def register(self) -> None:
        """The agent on the feedback topic."""
        self.ctx.app.agent(self.topic, name=self.agent_name("feedback"))(self.run)

    async def run(self, stream: faust.StreamT) -> None:
        """Wait for the replays (or the ready deadline), then learn from micro-batches."""
        await self.ctx.readiness.wait()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.ctx.settings.feedback_batch_size, within=self.within
        ):
            with AckWhenDone(events, "feedback"):
                await self.batch(events)

    async def batch(self, events: Sequence[faust.EventT]) -> None:
        """Plan, learn, then remember what was learned; failures are dead-lettered."""
        ctx, m = self.ctx, self.ctx.metrics
        m.batch_size.labels("feedback").observe(len(events))
        logical = ctx.logical
        plan = self.planner.plan(
            [inbound_of(e, logical) for e in events], ctx.history.get, int(time.time() * 1000)
        )
        if plan.redeliveries:
            m.redeliveries.inc(plan.redeliveries)
        for rejected in plan.rejected:
            await ctx.dead.send(rejected.inbound, rejected.reason, rejected.detail)
        if not plan.learn:
            return
        t0 = time.perf_counter()
        try:
            outcome, per_arm = await ctx.stages.run(
                "learn",
                self._learn_many,
                [item.event for item in plan.learn],
                [item.recent for item in plan.learn],
            )
        except StageFailed as exc:
            for item in plan.learn:
                await ctx.dead.send(item.inbound, ReasonCode.processing_error, str(exc))
            return
        m.stage_latency.labels("learn").observe(time.perf_counter() - t0)
        # Learned: remember the events (no await between the commit's reads and writes). Events
        # the learner rejected stay unlearned, so a replay after a fix is not a duplicate.
        unlearned = {pos for pos, _ in outcome.rejected}
        write_histories(ctx, plan.commit(ctx.history.get, unlearned))
        for pos, err in outcome.rejected:
            await ctx.dead.send(plan.learn[pos].inbound, err.reason, err.detail)
        if outcome.learned:
            m.events.labels("feedback", "ok").inc(outcome.learned)
            m.feedback_learned.inc(outcome.learned)
            if outcome.loss is not None:
                m.train_loss.set(outcome.loss)
            if outcome.scores is not None and outcome.labels is not None:
                m.observe_auc(outcome.scores, outcome.labels)
            m.model_version.set(ctx.engine.head.version)
        for arm, arm_outcome in per_arm.items():
            m.observe_arm(arm, arm_outcome.scores, arm_outcome.labels)

    def _learn_many(
        self, events: list[FeedbackEvent], recents: list[list[str]]
    ) -> tuple[LearnOutcome, dict[str, LearnOutcome]]:
        set_threads(self.ctx.settings.compute_threads)
        # Each event is learned by the head of the arm that made its recommendation.
        return self.arms.learn_many(events, recents)
