"""Faust wiring of worker health: heartbeat timer, rebalance hooks, lag poller, stall watchdog."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition

from promptrec.observability.health import Health
from promptrec.observability.lag import LagPoller
from promptrec.streams.clients import make_admin
from promptrec.streams.fetch_faults import emulate_midbatch_fetch_bug, emulate_slow_seek
from promptrec.streams.offsets import high_watermarks
from promptrec.streams.watchdog import StallWatchdog

if TYPE_CHECKING:
    import faust

    from promptrec.streams.agents import AgentContext

__all__ = ["instrument"]

_INPUT_TOPICS = ("interactions", "recommendation-requests", "feedback")


def instrument(app: faust.App, ctx: AgentContext) -> Health:
    """Register the heartbeat, rebalance hooks, lag poller and stall watchdog; return the Health.

    Call after the pipeline is built and before the Faust worker starts.
    """
    settings = ctx.settings
    metrics = ctx.metrics
    health = Health(settings.liveness_timeout_s)
    # Full input topic name -> logical name (label value); other topics (changelogs) are ignored.
    logical = {full: name for full, name in ctx.logical.items() if name in _INPUT_TOPICS}
    owned: set[TopicPartition] = set()
    joined: list[bool] = [False]

    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        previous = set(owned)
        owned.clear()
        owned.update(
            TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in logical
        )
        joined[0] = True
        metrics.rebalances.inc()
        counts = Counter(logical[tp.topic] for tp in owned)
        metrics.set_assignment(
            counts, [(logical[tp.topic], tp.partition) for tp in previous - owned]
        )

    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]

    # Ready only when the agents serve up-to-date answers: both replays are complete. (Past the
    # ready deadline the agents serve anyway, but the worker does not claim to be ready.)
    health.add_check("catalog", ctx.readiness.catalog.is_set)
    health.add_check("model", ctx.readiness.model.is_set)
    health.add_check(
        "agents",
        lambda: bool(app.agents) and all(a.started and not a.crashed for a in app.agents.values()),
    )
    health.add_check("group", lambda: joined[0] and not app.rebalancing)

    async def heartbeat() -> None:
        health.beat()
        metrics.ready.set(1 if health.ready()[0] else 0)

    app.timer(1.0)(heartbeat)

    poller = LagPoller(
        settings.effective_app_id,
        metrics,
        logical,
        lambda: list(owned),
        admin_factory=lambda: make_admin(settings),
        interval_s=settings.lag_poll_interval_s,
        # Fetch high watermarks, not ListOffsets: the embedded broker's counts batches.
        end_offsets=lambda tps: high_watermarks(settings, tps),
    )
    if settings.lag_poll_interval_s > 0:
        app.task(poller.run)
    if settings.emulate_midbatch_fetch_bug:
        emulate_midbatch_fetch_bug(logical)
    if settings.emulate_slow_seek_s > 0:
        emulate_slow_seek(settings.emulate_slow_seek_s)
    if settings.stall_timeout_s > 0:
        # Samples must be further apart than a fetch wait, so a fetched partition always shows
        # a new fetch response (see StallDetector).
        interval = max(1.0, 2 * settings.fetch_max_wait_ms / 1000)
        watchdog = StallWatchdog(
            app, metrics, logical, settings.stall_timeout_s, interval_s=interval
        )
        app.task(watchdog.run)
    return health
