"""Faust agents: catalog, recommendation (interactions + requests), feedback; plus timers.

The agents are thin: they decode records, keep the changelogged history table, hand whole
micro-batches to the domain classes on the engine thread, publish results and dead-letter
whatever cannot be processed, with the original bytes and a reason. Nothing is dropped silently
and no record stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import faiss
import faust
import torch
from faust.streams import _current_event

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import (
    DeadLetter,
    decode_feedback,
    decode_interaction,
    decode_request,
    to_json_bytes,
)
from promptrec.observability.metrics import Metrics
from promptrec.serving.catalog import CatalogRecord, CatalogUpdater
from promptrec.serving.engine import Engine
from promptrec.serving.history import UserHistory
from promptrec.serving.learner import OnlineLearner
from promptrec.serving.model_sync import HeadSync
from promptrec.serving.recommender import Query, Recommender
from promptrec.streams.catalog_reader import CatalogReader
from promptrec.streams.model_reader import ModelUpdateReader
from promptrec.streams.publisher import RecommendationPublisher, recommendation_json
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames

__all__ = ["Pipeline", "StageFailed"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StageFailed(Exception):
    """A batch stage kept failing after its retries."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} failed: {type(cause).__name__}: {cause}")
        self.stage = stage


class Pipeline:
    """Registers topics, the history table, agents and timers on a Faust app."""

    retries = 3

    def __init__(
        self, app: faust.App, settings: StreamSettings, engine: Engine, metrics: Metrics
    ) -> None:
        self.app = app
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.names = TopicNames.from_settings(settings)
        self.limits = settings.limits(engine.encoder_settings.max_text_chars)
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.recommender = Recommender(engine)
        # One id per process start: a restarted worker is a new contributor to the shared head.
        self.sync = HeadSync(engine.head, f"{self.worker_name}:{uuid.uuid4().hex[:8]}")
        self.learner = OnlineLearner(engine, self.recommender, learn=self.sync.learn_many)
        self.updater = CatalogUpdater(engine, self.limits)
        self.ready = asyncio.Event()  # catalog replay done
        self.model_ready = asyncio.Event()  # model-updates replay done
        self._faults = dict(settings.faults)
        self._encode_threads = engine.encoder_settings.torch_threads or torch.get_num_threads()
        n = self.names
        self._logical = {
            n.interactions: "interactions",
            n.requests: "recommendation-requests",
            n.feedback: "feedback",
            n.items: "items",
            n.users: "users",
        }
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.input_topic = app.topic(n.interactions, n.requests, **raw)
        self.feedback_topic = app.topic(n.feedback, **raw)
        self.recs_topic = app.topic(n.recommendations, **raw)
        self.publisher = RecommendationPublisher(settings, n.recommendations)
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]
        self.dead_topic = app.topic(n.dead_letter, **raw)
        self.model_topic = app.topic(n.model_updates, **raw)
        self.history = app.Table(
            "history",
            default=None,
            partitions=settings.partitions,
            key_type=str,
        )
        self.catalog_channel = app.channel(maxsize=10_000)
        self.reader = CatalogReader(settings, self.catalog_channel)
        self.model_reader = ModelUpdateReader(self)
        within = settings.batch_within_ms / 1000.0
        self._within = within
        app.agent(self.catalog_channel, name=f"{app.conf.id}.catalog")(self.catalog_agent)
        app.agent(self.input_topic, name=f"{app.conf.id}.recommend")(self.recommend_agent)
        app.agent(self.feedback_topic, name=f"{app.conf.id}.feedback")(self.feedback_agent)
        app.task(self.catalog_reader_task)
        app.task(self.model_reader_task)
        app.timer(settings.model_sync_interval_s)(self.model_sync_timer)
        app.timer(settings.checkpoint_interval_s)(self.checkpoint_timer)
        app.timer(5.0)(self.gauges_timer)

    # -- agents -------------------------------------------------------------------------------

    async def catalog_agent(self, stream: faust.StreamT) -> None:
        """Items and user profiles -> prompts -> encoder (one call per batch) -> index."""
        async for records in stream.take(self.settings.batch_size * 4, within=self._within):
            real = [r for r in records if not r.marker]
            self.metrics.batch_size.labels("catalog").observe(len(real))
            t0 = time.perf_counter()
            try:
                outcome = await self._run("encode", self._encode_many, real)
            except StageFailed as exc:
                for rec in real:
                    await self._dead(rec.topic, rec, ReasonCode.processing_error, str(exc))
            else:
                self.metrics.stage_latency.labels("catalog").observe(time.perf_counter() - t0)
                for rec, err in outcome.dead:
                    await self._dead(rec.topic, rec, err.reason, err.detail)
                ok = Counter(r.topic for r in real)
                ok.subtract(r.topic for r, _ in outcome.dead)
                # Items whose prompt text did not change were not re-encoded: outcome "skipped".
                skipped = min(outcome.unchanged, max(0, ok["items"]))
                if skipped:
                    ok["items"] -= skipped
                    self.metrics.events.labels("items", "skipped").inc(skipped)
                for topic, count in ok.items():
                    if count:
                        self.metrics.events.labels(topic, "ok").inc(count)
            if any(r.marker for r in records):
                try:
                    removed = await self._run("encode", self.updater.finish_replay)
                except StageFailed:  # stale items stay until the next restart; serve anyway
                    log.exception("dropping stale catalog items failed")
                    removed = 0
                log.info(
                    "catalog ready: %d items (%d stale removed)", len(self.engine.index), removed
                )
                self.metrics.catalog_ready.set(1)
                self.ready.set()
            self.metrics.index_items.set(len(self.engine.index))

    async def recommend_agent(self, stream: faust.StreamT) -> None:
        """Interactions and requests -> history -> candidates -> head -> top-K published."""
        await self._wait_ready()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.batch_size, within=self._within
        ):
            await self._recommend_batch(events)

    async def feedback_agent(self, stream: faust.StreamT) -> None:
        """Feedback -> mini-batch online learning of the head."""
        await self._wait_ready()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.feedback_batch_size, within=self._within
        ):
            await self._feedback_batch(events)

    # -- batch bodies -------------------------------------------------------------------------

    async def _recommend_batch(self, events: Sequence[faust.EventT]) -> None:
        m = self.metrics
        m.batch_size.labels("recommend").observe(len(events))
        t0 = time.perf_counter()
        now_ms = int(time.time() * 1000)
        max_ts = self.limits.max_ts(now_ms)
        settings = self.settings
        queries: list[Query] = []
        sources: list[tuple[faust.EventT, str, str, int]] = []
        clicked: list[str] = []
        dead: list[tuple[str, Any, ReasonCode, str]] = []
        # One history read and one changelog write per user per batch. No await happens between
        # the reads and the writes, so the feedback agent never interleaves with them.
        hists: dict[str, UserHistory] = {}
        changed: dict[str, faust.EventT] = {}
        ok = Counter[str]()

        def history(user_id: str) -> UserHistory:
            hist = hists.get(user_id)
            if hist is None:
                hist = hists[user_id] = UserHistory.from_value(self.history.get(user_id))
            return hist

        for event in events:
            msg = event.message
            topic = self._logical[msg.topic]
            try:
                if topic == "interactions":
                    e = decode_interaction(msg.value, self.limits, max_ts=max_ts)
                    if e.item_id not in self.engine.index:
                        raise InvalidEvent(
                            ReasonCode.unknown_item, f"item {e.item_id!r} not in the catalog"
                        )
                    hist = history(e.user_id)
                    position = f"{msg.partition}:{msg.offset}"
                    seen_at = hist.position_of(e.event_id)
                    if seen_at is None:
                        hist.append(e.event_id, e.item_id, e.ts, settings.history_len, position)
                        changed[e.user_id] = event
                        clicked.append(e.item_id)
                    elif seen_at != position:
                        raise InvalidEvent(
                            ReasonCode.duplicate_event,
                            f"event_id {e.event_id!r} already applied (at {seen_at or '?'})",
                        )
                    else:
                        # Redelivered after a crash or rebalance: already in the history, but
                        # its recommendation may not have been published, so answer again.
                        m.redeliveries.inc()
                    user_id, k, source, source_id, ts = (
                        e.user_id, settings.top_k, "interaction", e.event_id, e.ts
                    )  # fmt: skip
                else:
                    r = decode_request(msg.value, self.limits, max_ts=max_ts)
                    hist = history(r.user_id)
                    user_id, k, source, source_id, ts = (
                        r.user_id, r.k or settings.top_k, "request", r.request_id, r.ts
                    )  # fmt: skip
            except InvalidEvent as exc:
                dead.append((topic, msg, exc.reason, exc.detail))
                continue
            ok[topic] += 1
            queries.append(Query(user_id, hist.recent(settings.recent_items), hist.item_set(), k))
            sources.append((event, source, source_id, ts))
        for user_id, event in changed.items():
            # Table writes go to the changelog partition of the *current* event: an event of
            # this user (same key, same partition), not the batch's last one.
            _current_event.set(weakref.ref(event))
            self.history[user_id] = hists[user_id].to_value()
        for topic, count in ok.items():
            m.events.labels(topic, "ok").inc(count)
        m.stage_latency.labels("decode").observe(time.perf_counter() - t0)
        for topic, msg, reason, detail in dead:
            await self._dead(topic, msg, reason, detail)
        if not queries:
            return

        def work() -> Any:
            self._threads(self.settings.compute_threads)
            self.engine.popularity.add_many(clicked)
            return self.recommender.recommend_many(queries)

        try:
            batch = await self._run("recommend", work)
        except StageFailed as exc:
            for event, *_ in sources:
                msg = event.message
                await self._dead(
                    self._logical[msg.topic], msg, ReasonCode.processing_error, str(exc)
                )
            return
        for stage, seconds in batch.timings.items():
            m.stage_latency.labels(stage).observe(seconds)
        t1 = time.perf_counter()
        version = self.engine.head.version
        now = time.time()
        generated = int(now * 1000)
        records: list[tuple[bytes, bytes]] = []
        strategies = Counter[tuple[str, str]]()
        for i, (query, (_event, source, source_id, ts)) in enumerate(
            zip(queries, sources, strict=True)
        ):
            rec_id = uuid.uuid4().hex
            records.append(
                (
                    query.user_id.encode(),
                    recommendation_json(
                        rec_id,
                        query.user_id,
                        batch.items[i],
                        version,
                        source,
                        source_id,
                        ts,
                        generated,
                        self.worker_name,
                    ),
                )
            )
            if batch.strategies[i] == "model":
                self.learner.remember(rec_id, batch.users[i])
            strategies[source, batch.strategies[i]] += 1
        retries = await self.publisher.publish_many(records)
        if retries:
            m.retries.labels("publish").inc(retries)
        now = time.time()
        for (source, strategy), count in strategies.items():
            m.recommendations.labels(source, strategy).inc(count)
        for _event, _source, _id, ts in sources:
            m.e2e_latency.observe(max(0.0, now - ts / 1000.0))
        m.stage_latency.labels("publish").observe(time.perf_counter() - t1)

    async def _feedback_batch(self, events: Sequence[faust.EventT]) -> None:
        m = self.metrics
        m.batch_size.labels("feedback").observe(len(events))
        max_ts = self.limits.max_ts(int(time.time() * 1000))
        decoded, recents, kept = [], [], []
        batch_ids: set[str] = set()
        for event in events:
            msg = event.message
            position = f"{msg.partition}:{msg.offset}"
            try:
                f = decode_feedback(msg.value, self.limits, max_ts=max_ts)
                hist = UserHistory.from_value(self.history.get(f.user_id))
                seen_at = hist.feedback_position(f.event_id)
                if seen_at == position:
                    # Redelivered after a crash or rebalance: already learned from.
                    m.redeliveries.inc()
                    continue
                if seen_at is not None or f.event_id in batch_ids:
                    raise InvalidEvent(
                        ReasonCode.duplicate_event,
                        f"feedback event_id {f.event_id!r} already learned (at {seen_at or '?'})",
                    )
            except InvalidEvent as exc:
                await self._dead("feedback", msg, exc.reason, exc.detail)
                continue
            batch_ids.add(f.event_id)
            hist.add_feedback(f.event_id, position, self.settings.history_len)
            _current_event.set(weakref.ref(event))
            self.history[f.user_id] = hist.to_value()
            decoded.append(f)
            recents.append(hist.recent(self.settings.recent_items))
            kept.append(event)
        if not decoded:
            return
        t0 = time.perf_counter()
        try:
            outcome = await self._run("learn", self._learn_many, decoded, recents)
        except StageFailed as exc:
            for event in kept:
                await self._dead("feedback", event.message, ReasonCode.processing_error, str(exc))
            return
        m.stage_latency.labels("learn").observe(time.perf_counter() - t0)
        for pos, err in outcome.rejected:
            await self._dead("feedback", kept[pos].message, err.reason, err.detail)
        if outcome.learned:
            m.events.labels("feedback", "ok").inc(outcome.learned)
            m.feedback_learned.inc(outcome.learned)
            if outcome.loss is not None:
                m.train_loss.set(outcome.loss)
            if outcome.scores is not None and outcome.labels is not None:
                m.observe_auc(outcome.scores, outcome.labels)
            m.model_version.set(self.engine.head.version)

    # -- tasks and timers ---------------------------------------------------------------------

    async def catalog_reader_task(self) -> None:
        """Run the per-worker catalog consumer for the life of the worker."""
        try:
            await self.reader.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("catalog reader failed; the worker stops so it can be restarted")
            await self.app.crash(RuntimeError("catalog reader failed"))  # type: ignore[attr-defined]

    async def model_reader_task(self) -> None:
        """Follow the model-updates topic for the life of the worker."""
        try:
            await self.model_reader.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("model-updates reader failed; the worker stops so it can be restarted")
            await self.app.crash(RuntimeError("model reader failed"))  # type: ignore[attr-defined]

    async def model_sync_timer(self) -> None:
        """Publish this worker's head changes, then count them once the broker has them."""
        if not self.model_ready.is_set():
            return
        try:
            update = await self._run("sync", self.sync.pending)
        except StageFailed:
            return
        if update is None:
            return
        t0 = time.perf_counter()
        try:
            fut = await self.model_topic.send(key=update.key.encode(), value=update.to_bytes())
            await fut  # the broker's ack: only then does the update count in the version
        except Exception:
            log.exception("publishing the head update failed; retrying next interval")
            self.metrics.retries.labels("sync").inc()
            return
        await self._run("sync", self.sync.published, update.seq)
        self.metrics.stage_latency.labels("sync").observe(time.perf_counter() - t0)
        self.metrics.model_version.set(self.sync.version)

    async def checkpoint_timer(self) -> None:
        """Snapshot the index and checkpoint the head; a failure is logged and retried later."""
        if not self.ready.is_set():
            return
        try:
            await self._run("checkpoint", self.engine.checkpoint)
        except StageFailed:
            log.exception("checkpoint failed")
        else:
            self.metrics.last_checkpoint.set(time.time())

    async def gauges_timer(self) -> None:
        """Refresh state gauges that are not updated per batch."""
        self.metrics.users_with_history.set(len(self.history))
        self.metrics.index_items.set(len(self.engine.index))
        self.metrics.model_version.set(self.engine.head.version)
        self.metrics.refresh_process()

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _threads(n: int) -> None:
        """torch and FAISS threads of the engine thread's next job (cheap: ~0.3 us)."""
        torch.set_num_threads(n)
        faiss.omp_set_num_threads(n)

    def _encode_many(self, records: list[CatalogRecord]) -> Any:
        # Catalog encoding is bulk work: every core. The per-event path is not: on a small
        # machine, OpenMP threads spinning for a (64 x 100)-candidate forward starve the event
        # loop and the broker (measured: ~25% less worker CPU per event with 1 thread).
        self._threads(self._encode_threads)
        return self.updater.apply_many(records)

    def _learn_many(self, events: list[Any], recents: list[list[str]]) -> Any:
        self._threads(self.settings.compute_threads)
        return self.learner.learn_many(events, recents)

    async def _on_shutdown(self, app: Any, *args: Any, **kwargs: Any) -> None:
        await self.publisher.stop()

    async def _wait_ready(self) -> None:
        timeout = self.settings.catalog_ready_timeout_s
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=timeout)
            # Serving before the head is rebuilt would publish an older model version.
            await asyncio.wait_for(self.model_ready.wait(), timeout=timeout)
        except TimeoutError:
            log.warning("catalog/model replay not finished after %.0f s; serving anyway", timeout)

    def _inject_fault(self, stage: str) -> None:
        """``fault_injection`` (a testing aid): fail the first N runs of a stage."""
        left = self._faults.get(stage, 0)
        if left > 0:
            self._faults[stage] = left - 1
            raise RuntimeError(f"injected fault in stage {stage!r} ({left - 1} left)")

    async def _run(self, stage: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the engine thread; retry with exponential backoff, then give up."""
        loop = asyncio.get_running_loop()
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                self._inject_fault(stage)
                return await loop.run_in_executor(self.engine.executor, fn, *args)
            except Exception as exc:
                if attempt == self.retries:
                    log.exception(
                        "%s failed %d times; dead-lettering the batch", stage, attempt + 1
                    )
                    raise StageFailed(stage, exc) from exc
                self.metrics.retries.labels(stage).inc()
                log.warning("%s failed (%r); retry %d in %.1f s", stage, exc, attempt + 1, delay)
                await asyncio.sleep(delay)
                delay *= 4
        raise AssertionError("unreachable")

    async def _dead(self, topic: str, msg: Any, reason: ReasonCode, detail: str) -> None:
        """Publish a dead-letter record with the original bytes and the reason."""
        if isinstance(msg, CatalogRecord):
            names = {"items": self.names.items, "users": self.names.users}
            original = names[msg.topic]
        else:
            original = msg.topic
        record = DeadLetter.build(
            topic=original,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            reason=reason,
            detail=detail,
            worker=self.worker_name,
            max_bytes=self.settings.dead_letter_max_bytes,
        )
        await self.dead_topic.send(key=msg.key, value=to_json_bytes(record))
        self.metrics.dead_letters.labels(topic, str(reason)).inc()
        self.metrics.events.labels(topic, "dead_letter").inc()
