"""Prometheus metrics of one worker.

Every metric lives in a per-worker :class:`~prometheus_client.CollectorRegistry` so that tests can
build several workers' metrics in one process. Label values are bounded sets (logical topic names,
reason codes, stage names): never user or item ids.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    make_wsgi_app,
)

__all__ = [
    "AGENTS",
    "BATCH_BUCKETS",
    "INPUT_TOPICS",
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "RETRY_STAGES",
    "STAGES",
    "Metrics",
    "Route",
    "RunningAUC",
]

# Bounded label values, created at start with a zero value: a series that exists before its first
# increment lets rate() and increase() see that increment (Prometheus cannot extrapolate from a
# series that appears already at 1).
INPUT_TOPICS = ("items", "users", "interactions", "recommendation-requests", "feedback")
OUTCOMES = ("ok", "dead_letter", "skipped")
# Timed stages (promptrec_stage_seconds{stage}): "catalog" is prompt rendering + text encoding +
# index upsert of a catalog batch; "user" builds user vectors, "search" is the FAISS search,
# "score" the head forward, "publish" the producer sends, "learn" one online-learning step,
# "sync" publishing this worker's head update to the model-updates topic.
STAGES = ("decode", "user", "search", "score", "publish", "catalog", "learn", "sync")
# Stages whose failures are retried (promptrec_stage_retries_total{stage}); "publish" counts the
# producer's re-sends of recommendations.
RETRY_STAGES = ("encode", "recommend", "learn", "sync", "checkpoint", "publish")
AGENTS = ("catalog", "recommend", "feedback")
SOURCES = ("interaction", "request")
STRATEGIES = ("model", "popular")

# A route of the metrics HTTP server: returns (HTTP status code, content type, body).
Route = Callable[[], tuple[int, str, bytes]]

# Seconds; fine-grained below 100 ms because that is where a real-time recommender lives.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class RunningAUC:
    """ROC AUC over the most recent ``window`` (score, label) pairs (test-then-learn)."""

    def __init__(self, window: int = 2000) -> None:
        self._scores: deque[float] = deque(maxlen=window)
        self._labels: deque[float] = deque(maxlen=window)

    def update_many(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add predictions made *before* the model learned from these labels."""
        self._scores.extend(float(s) for s in scores)
        self._labels.extend(float(y) for y in labels)

    def value(self) -> float | None:
        """The AUC, or None while the window lacks positives or negatives."""
        labels = np.asarray(self._labels) > 0.5
        n_pos = int(labels.sum())
        n_neg = labels.size - n_pos
        if n_pos == 0 or n_neg == 0:
            return None
        scores = np.asarray(self._scores)
        order = scores.argsort(kind="mergesort")
        ranks = np.empty(scores.size, dtype=np.float64)
        ranks[order] = np.arange(1, scores.size + 1)
        # Average ranks over ties so equal scores count one half.
        _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
        sums = np.zeros(counts.size)
        np.add.at(sums, inverse, ranks)
        ranks = (sums / counts)[inverse]
        return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class _Server(ThreadingMixIn, WSGIServer):
    """Threaded WSGI server: a slow scrape never blocks a probe."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every second are not worth a log line."""


class Metrics:
    """The worker's metrics; one instance per worker process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "promptrec_events",
            "Input records consumed, by logical topic and outcome.",
            ["topic", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "promptrec_dead_letters",
            "Records sent to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.recommendations = Counter(
            "promptrec_recommendations",
            "Recommendations published, by trigger (interaction/request) and strategy.",
            ["source", "strategy"],
            registry=r,
        )
        self.feedback_learned = Counter(
            "promptrec_feedback_learned", "Feedback events the head learned from.", registry=r
        )
        self.e2e_latency = Histogram(
            "promptrec_event_to_recommendation_seconds",
            "Source event timestamp to recommendation published.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "promptrec_stage_seconds",
            "Time per micro-batch in each pipeline stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "promptrec_batch_size",
            "Records per micro-batch, by agent.",
            ["agent"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.index_items = Gauge(
            "promptrec_index_items", "Items in the candidate index.", registry=r
        )
        self.users_with_history = Gauge(
            "promptrec_users_with_history",
            "Users with a history in this worker's partitions.",
            registry=r,
        )
        self.model_version = Gauge(
            "promptrec_model_version", "Version of the scoring head.", registry=r
        )
        self.last_checkpoint = Gauge(
            "promptrec_last_checkpoint_timestamp_seconds",
            "Unix time of the last successful checkpoint.",
            registry=r,
        )
        self.train_loss = Gauge(
            "promptrec_online_loss", "Loss of the last online-learning step.", registry=r
        )
        self.online_auc = Gauge(
            "promptrec_online_auc",
            "AUC of the head on incoming feedback, scored before learning from it; NaN until "
            "both labels were seen.",
            registry=r,
        )
        # NaN, not 0: an AUC of 0 is a real (worst) value, and "not computed yet" must differ.
        self.online_auc.set(float("nan"))
        self.catalog_ready = Gauge(
            "promptrec_catalog_ready", "1 once the catalog replay has caught up.", registry=r
        )
        self.retries = Counter(
            "promptrec_stage_retries", "Retried batch failures, by stage.", ["stage"], registry=r
        )
        self.popularity_clicks = Gauge(
            "promptrec_popularity_clicks",
            "Interactions counted by the recent-popularity fallback since start "
            "(each accepted click once; a failed batch counts none).",
            registry=r,
        )
        self.redeliveries = Counter(
            "promptrec_redeliveries",
            "Interactions read again after a crash or rebalance (already applied; re-answered).",
            registry=r,
        )
        self.model_updates_applied = Counter(
            "promptrec_model_updates_applied",
            "Head updates of other workers merged into this worker's head.",
            registry=r,
        )
        self.rss = Gauge(
            "promptrec_process_max_rss_bytes", "Peak resident set size of the worker.", registry=r
        )
        # Current memory and CPU: promptrec_process_{resident_memory_bytes,cpu_seconds_total,
        # open_fds,start_time_seconds} (read from /proc at scrape time).
        ProcessCollector(namespace="promptrec", registry=r)
        self.rebalances = Counter(
            "promptrec_rebalances",
            "Consumer-group rebalances this worker took part in (partitions assigned).",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "promptrec_assigned_partitions",
            "Input partitions assigned to this worker, by logical topic.",
            ["topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "promptrec_consumer_lag",
            "Records behind: end offset minus the group's committed offset, per assigned "
            "partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.partition_stalls = Counter(
            "promptrec_partition_stalls",
            "Input partitions found stalled (behind the fetch high watermark, fetched, position "
            "not moving for PROMPTREC_STALL_TIMEOUT_S) and then recovered by the watchdog.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_polls = Counter(
            "promptrec_consumer_lag_polls",
            "Consumer-lag polls, by result (ok/error).",
            ["result"],
            registry=r,
        )
        self.ready = Gauge(
            "promptrec_ready",
            "1 while the worker is ready (catalog and model replayed, agents running, not "
            "rebalancing).",
            registry=r,
        )
        self.info = Info("promptrec_worker", "Static facts about the worker.", registry=r)
        # Per experiment arm (label values: the arm names of PROMPTREC_EXPERIMENTS_FILE, or
        # "default"); separate series so the unlabelled totals above keep their meaning.
        self.arm_recommendations = Counter(
            "promptrec_arm_recommendations",
            "Recommendations published, by experiment arm.",
            ["arm"],
            registry=r,
        )
        self.arm_feedback = Counter(
            "promptrec_arm_feedback",
            "Feedback events learned by an arm's head, by arm.",
            ["arm"],
            registry=r,
        )
        self.arm_clicks = Counter(
            "promptrec_arm_clicks",
            "Positive feedback (label/target above 0.5) on an arm's recommendations, by arm.",
            ["arm"],
            registry=r,
        )
        self.arm_auc = Gauge(
            "promptrec_arm_online_auc",
            "AUC of an arm's head on incoming feedback, scored before learning from it.",
            ["arm"],
            registry=r,
        )
        self._arm_aucs: dict[str, RunningAUC] = {}
        self.auc = RunningAUC()
        self._server: WSGIServer | None = None
        self._init_labels()

    def _init_labels(self) -> None:
        """Create every bounded label combination at zero (see :data:`INPUT_TOPICS`)."""
        for topic in INPUT_TOPICS:
            for outcome in OUTCOMES:
                self.events.labels(topic, outcome)
        for source in SOURCES:
            for strategy in STRATEGIES:
                self.recommendations.labels(source, strategy)
        for stage in STAGES:
            self.stage_latency.labels(stage)
        for stage in RETRY_STAGES:
            self.retries.labels(stage)
        for agent in AGENTS:
            self.batch_size.labels(agent)
        for result in ("ok", "error"):
            self.lag_polls.labels(result)

    def set_info(self, facts: Mapping[str, str]) -> None:
        """Publish static facts (device, dtype, index kind, model) as ``promptrec_worker_info``."""
        self.info.info({key: str(value) for key, value in facts.items()})

    def set_assignment(self, counts: Mapping[str, int], stale: Iterable[tuple[str, int]]) -> None:
        """Record the partitions per topic after a rebalance; drop lag series no longer owned."""
        for topic in ("interactions", "recommendation-requests", "feedback"):
            self.assigned_partitions.labels(topic).set(counts.get(topic, 0))
        for topic, partition in stale:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))

    def serve(self, host: str, port: int, routes: Mapping[str, Route] | None = None) -> int:
        """Start the HTTP endpoint; returns the bound port (0 = disabled).

        ``/metrics`` (and ``/``) serve the registry; ``routes`` adds more paths on the same
        port (the worker adds ``/healthz`` and ``/readyz``).
        """
        if port == 0:
            return 0
        metrics_app = make_wsgi_app(self.registry)
        extra = dict(routes or {})

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            route = extra.get(environ.get("PATH_INFO", "/"))
            if route is None:
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            code, content_type, body = route()
            reason = {200: "OK", 503: "Service Unavailable"}.get(code, "Error")
            start_response(
                f"{code} {reason}",
                [("Content-Type", content_type), ("Content-Length", str(len(body)))],
            )
            return [body]

        server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def init_arms(self, arms: Iterable[str]) -> None:
        """Create the per-arm series at zero; only these arm names are ever used as labels."""
        for arm in arms:
            self.arm_recommendations.labels(arm)
            self.arm_feedback.labels(arm)
            self.arm_clicks.labels(arm)
            # NaN until both labels were seen (0 would be a real, worst value).
            self.arm_auc.labels(arm).set(float("nan"))
            self._arm_aucs[arm] = RunningAUC()

    def observe_arm(self, arm: str, scores: np.ndarray | None, labels: np.ndarray | None) -> None:
        """Count an arm's learned feedback and clicks and refresh its online AUC."""
        if scores is None or labels is None:
            return
        self.arm_feedback.labels(arm).inc(len(labels))
        self.arm_clicks.labels(arm).inc(int((labels > 0.5).sum()))
        auc = self._arm_aucs.setdefault(arm, RunningAUC())
        auc.update_many(scores, labels)
        value = auc.value()
        if value is not None:
            self.arm_auc.labels(arm).set(value)

    def observe_auc(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Record pre-update predictions and refresh the online AUC gauge."""
        self.auc.update_many(scores, labels)
        value = self.auc.value()
        if value is not None:
            self.online_auc.set(value)

    def refresh_process(self) -> None:
        """Update process-level gauges (called from a timer, not per event)."""
        # ru_maxrss is in KiB on Linux.
        self.rss.set(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    @staticmethod
    def now() -> float:
        """Monotonic clock for stage timings."""
        return time.perf_counter()
