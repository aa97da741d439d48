"""The worker's wiring: shared context, the agents, and the maintenance timers."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import faust

from promptrec.observability.metrics import Metrics
from promptrec.serving.arms import Arms, ArmState
from promptrec.serving.engine import Engine
from promptrec.serving.experiments import Experiments
from promptrec.serving.learner import OnlineLearner
from promptrec.serving.model_sync import HeadSync
from promptrec.serving.recommender import Recommender
from promptrec.streams.agents.base import Agent
from promptrec.streams.agents.catalog_agent import CatalogAgent
from promptrec.streams.agents.context import AgentContext, Readiness
from promptrec.streams.agents.feedback_agent import FeedbackAgent
from promptrec.streams.agents.model_updates import ModelUpdates, sync_key
from promptrec.streams.agents.recommend_agent import RecommendAgent
from promptrec.streams.agents.stages import DeadLetters, StageFailed, StageRunner
from promptrec.streams.heap import freeze_long_lived
from promptrec.streams.publisher import RecommendationPublisher
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)


class Pipeline:
    """Builds the shared context and the agents, and registers them and the timers on ``app``.

    Agents: catalog (items, users), recommend (interactions, requests), feedback, model
    updates. Timers: checkpoint and state gauges.
    """

    def __init__(
        self,
        app: faust.App,
        settings: StreamSettings,
        engine: Engine | Mapping[str, Engine],
        metrics: Metrics,
        experiments: Experiments | None = None,
    ) -> None:
        engines = engine if isinstance(engine, Mapping) else {"default": engine}
        first = next(iter(engines.values()))
        if experiments is None:
            es = first.encoder_settings
            experiments = Experiments.single(es.item_prompt, es.user_prompt, es.checkpoint)
        engine = first
        names = TopicNames.from_settings(settings)
        worker_name = f"{socket.gethostname()}:{os.getpid()}"
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        dead_topic = app.topic(names.dead_letter, **raw)

        async def send_dead(key: bytes | None, value: bytes) -> None:
            await dead_topic.send(key=key, value=value)

        self.ctx = AgentContext(
            app=app,
            settings=settings,
            engine=engine,
            metrics=metrics,
            names=names,
            logical=names.by_topic(),
            limits=settings.limits(engine.encoder_settings.max_text_chars),
            worker_name=worker_name,
            stages=StageRunner(engine.executor, metrics, settings.faults),
            dead=DeadLetters(
                send_dead, names, worker_name, settings.dead_letter_max_bytes, metrics
            ),
            readiness=Readiness(settings.catalog_ready_timeout_s),
            history=app.Table(
                "history", default=None, partitions=settings.partitions, key_type=str
            ),
        )
        # One id per process start: a restarted worker is a new contributor to the shared head.
        incarnation = f"{worker_name}:{uuid.uuid4().hex[:8]}"
        states, self.syncs = [], {}
        for arm in experiments.arms:
            arm_engine = engines[arm.name]
            recommender = Recommender(arm_engine)
            # Each arm's head has its own key space on model-updates: heads of arms never mix.
            sync = HeadSync(arm_engine.head, sync_key(experiments, arm.name, incarnation))
            learner = OnlineLearner(arm_engine, recommender, learn=sync.learn_many)
            states.append(ArmState(arm, arm_engine, recommender, learner))
            self.syncs[arm.name] = sync
        self.arms = Arms(experiments, states)
        self.sync = self.syncs[experiments.arms[0].name]
        metrics.init_arms(self.arms.names)
        self.publisher = RecommendationPublisher(settings, names.recommendations)
        # PROMPTREC_GC_FREEZE: the heap is frozen once more after the replays (gauges timer).
        self._frozen_after_replay = not settings.gc_freeze
        self.agents: list[Agent] = [
            CatalogAgent(self.ctx, self.arms),
            RecommendAgent(self.ctx, self.arms, self.publisher),
            FeedbackAgent(self.ctx, self.arms),
            ModelUpdates(self.ctx, self.arms, self.syncs),
        ]
        for agent in self.agents:
            agent.register()
        app.timer(settings.checkpoint_interval_s)(self.checkpoint_timer)
        app.timer(5.0)(self.gauges_timer)
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    @property
    def engine(self) -> Engine:
        """The worker's engine."""
        return self.ctx.engine

    @property
    def metrics(self) -> Metrics:
        """The worker's metrics."""
        return self.ctx.metrics

    @property
    def readiness(self) -> Readiness:
        """The replay gate of the agents (and of ``/readyz``)."""
        return self.ctx.readiness

    async def checkpoint_timer(self) -> None:
        """Snapshot the index and checkpoint the head; a failure is logged and retried later."""
        ctx = self.ctx
        if not ctx.readiness.catalog.is_set():
            return
        try:
            await ctx.stages.run("checkpoint", self.arms.checkpoint)
        except StageFailed:
            log.exception("checkpoint failed")
        else:
            ctx.metrics.last_checkpoint.set(time.time())

    async def gauges_timer(self) -> None:
        """Refresh state gauges that are not updated per batch."""
        ctx, m = self.ctx, self.ctx.metrics
        m.users_with_history.set(len(ctx.history))
        m.index_items.set(len(ctx.engine.index))
        m.model_version.set(ctx.engine.head.version)
        m.popularity_clicks.set(ctx.engine.popularity.clicks)
        m.refresh_process()
        if not self._frozen_after_replay and ctx.readiness.replayed:
            self._frozen_after_replay = True
            freeze_long_lived("after the catalog and model replays")

    async def _on_shutdown(self, app: Any, *args: Any, **kwargs: Any) -> None:
        await self.publisher.stop()
