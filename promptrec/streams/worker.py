"""``promptrec worker``: load the engine, build the Faust app, run until stopped."""

from __future__ import annotations

import logging

import faust

from promptrec.encoder.settings import EncoderSettings
from promptrec.index.settings import IndexSettings
from promptrec.observability.metrics import Metrics
from promptrec.serving.engine import Engine
from promptrec.streams.agents import Pipeline
from promptrec.streams.app import make_app
from promptrec.streams.instrument import instrument
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import ensure_topics

__all__ = ["build_worker", "run_worker"]

log = logging.getLogger(__name__)

_LOGLEVEL = {"debug": "debug", "info": "info", "warn": "warn", "error": "error"}


def build_worker(
    stream: StreamSettings, encoder: EncoderSettings, index: IndexSettings
) -> tuple[faust.Worker, Pipeline]:
    """Create topics, load the engine, wire the pipeline; returns a ready-to-run Faust worker."""
    ensure_topics(stream)
    engine = Engine.load(stream, encoder, index)
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
    pipeline = Pipeline(app, stream, engine, metrics)
    # Heartbeat, rebalance hooks, lag poller; /healthz and /readyz share the metrics port.
    health = instrument(app, pipeline.ctx)
    port = metrics.serve(stream.metrics_host, stream.metrics_port, routes=health.routes())
    if port:
        log.info("metrics on http://%s:%d/metrics", stream.metrics_host, port)
    worker = faust.Worker(app, loglevel=_LOGLEVEL[stream.log_level], quiet=True)
    return worker, pipeline


def run_worker(stream: StreamSettings, encoder: EncoderSettings, index: IndexSettings) -> int:
    """Run one worker in the foreground; SIGINT/SIGTERM stop it after a final checkpoint."""
    logging.basicConfig(
        level=stream.log_level.upper().replace("WARN", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    worker, pipeline = build_worker(stream, encoder, index)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    finally:
        pipeline.metrics.close()
        if pipeline.readiness.catalog.is_set():
            try:
                pipeline.engine.checkpoint()
                log.info("final checkpoint written to %s", stream.state_dir)
            except Exception:
                log.exception("final checkpoint failed")
        pipeline.engine.close()
    return code
