"""``promptrec worker``: load the engine, build the Faust app, run until stopped."""

from __future__ import annotations

import logging

import faust

from promptrec.encoder import PromptTemplates
from promptrec.encoder.settings import EncoderSettings
from promptrec.index.settings import IndexSettings
from promptrec.observability.metrics import Metrics
from promptrec.serving.arms import load_arm_engines
from promptrec.serving.engine import attach_encoder_process
from promptrec.serving.experiments import ExperimentError, Experiments
from promptrec.streams.agents import Pipeline
from promptrec.streams.app import make_app
from promptrec.streams.exceptions import ConfigError
from promptrec.streams.heap import freeze_long_lived
from promptrec.streams.instrument import instrument
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import ensure_topics

__all__ = ["build_worker", "run_worker", "without_spinner"]

log = logging.getLogger(__name__)

_LOGLEVEL = {"debug": "debug", "info": "info", "warn": "warn", "error": "error"}


def build_worker(
    stream: StreamSettings, encoder: EncoderSettings, index: IndexSettings
) -> tuple[faust.Worker, Pipeline]:
    """Create topics, load the engine, wire the pipeline; returns a ready-to-run Faust worker.

    Raises:
        ConfigError: The experiments file (``PROMPTREC_EXPERIMENTS_FILE``) is unusable; checked
            first, before the broker or the model are touched.
    """
    try:
        experiments = Experiments.from_settings(
            stream, encoder, PromptTemplates.load(encoder.prompts_file)
        )
    except ExperimentError as exc:
        raise ConfigError(str(exc)) from None
    ensure_topics(stream)
    engines = load_arm_engines(stream, encoder, index, experiments)
    engine = next(iter(engines.values()))
    if stream.encoder_process:
        # The catalog thread's torch threads (CatalogAgent): every core unless configured.
        attach_encoder_process(list(engines.values()), encoder.encode_threads())
    if experiments.active:
        log.info(
            "experiment %s: arms %s, %d item index(es)",
            experiments.name,
            ", ".join(f"{a.name} ({a.weight:g}%)" for a in experiments.arms),
            len(experiments.indexes()),
        )
    metrics = Metrics()
    metrics.info.info(
        {
            "device": engine.encoder.device,
            "dtype": engine.encoder.dtype,
            "index_kind": engine.index.kind,
            "index_device": engine.index.device,
            "model": engine.encoder.model_dir.name,
        }
    )
    metrics.model_version.set(engine.head.version)
    app = make_app(stream)
    pipeline = Pipeline(app, stream, engines, metrics, experiments)
    # Heartbeat, rebalance hooks, lag poller; /healthz and /readyz share the metrics port.
    health = instrument(app, pipeline.ctx)
    port = metrics.serve(stream.metrics_host, stream.metrics_port, routes=health.routes())
    if port:
        log.info("metrics on http://%s:%d/metrics", stream.metrics_host, port)
    worker = without_spinner(faust.Worker(app, loglevel=_LOGLEVEL[stream.log_level], quiet=True))
    return worker, pipeline


def without_spinner(worker: faust.Worker) -> faust.Worker:
    """``worker`` without Faust's terminal progress spinner (a worker has no terminal).

    At log levels of WARN and above Faust keeps the spinner, and to spin it on every log record
    it sets the root logger to DEBUG: every faust/mode debug call on the event path (one per
    produced record, in ``Topic.publish_message``) then built a LogRecord and ran the handlers,
    ~4 % of the event loop's CPU at MAX in ``bench pipeline`` (which runs the worker at WARN).
    """
    worker.spinner = None
    return worker


def run_worker(stream: StreamSettings, encoder: EncoderSettings, index: IndexSettings) -> int:
    """Run one worker in the foreground; SIGINT/SIGTERM stop it after a final checkpoint."""
    logging.basicConfig(
        level=stream.log_level.upper().replace("WARN", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    worker, pipeline = build_worker(stream, encoder, index)
    if stream.gc_freeze:
        freeze_long_lived("after start-up")
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    finally:
        pipeline.metrics.close()
        if pipeline.readiness.catalog.is_set():
            try:
                pipeline.arms.checkpoint()
                log.info("final checkpoint written to %s", stream.state_dir)
            except Exception:
                log.exception("final checkpoint failed")
        pipeline.engine.close()
    return code
