"""The Faust app of a worker and its configuration."""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from promptrec.streams import commit_flush, recovery
from promptrec.streams.clients import faust_app_options
from promptrec.streams.faust_fast import install_fast_handoff, sensors_off
from promptrec.streams.settings import StreamSettings

__all__ = ["make_app", "set_fetch_max_wait"]

_original_create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = 1500


def set_fetch_max_wait(ms: int) -> None:
    """Set how long a Faust fetch may wait on the broker for new records.

    Faust hard-codes 1500 ms. A broker that does not answer a waiting fetch as soon as data
    arrives (the embedded Tansu broker) then adds up to that much latency to every event, so the
    worker installs its own value (``PROMPTREC_FETCH_MAX_WAIT_MS``).
    """
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = ms

    def create(self: Any, transport: Any) -> Any:
        consumer = _original_create(self, transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def make_app(settings: StreamSettings) -> faust.App:
    """A Faust app configured from the settings (agents are added by the pipeline).

    With ``PROMPTREC_FAUST_FAST_PATH`` (the default) the fetch loop hands messages over without
    two tasks per message and the app's sensor hooks are no-ops
    (:mod:`promptrec.streams.faust_fast`).
    """
    set_fetch_max_wait(settings.fetch_max_wait_ms)
    install_fast_handoff(settings.faust_fast_path)
    # Changelogs may then be written in batches (PROMPTREC_PRODUCER_BATCH_BYTES).
    recovery.install(settings)
    # Offsets are committed only after every buffered table write is handed to the producer.
    commit_flush.install()
    app = faust.App(
        settings.effective_app_id,
        # Broker, credentials, group timeouts, producer: the one client factory decides them.
        **faust_app_options(settings),
        store="memory://",
        # Table changelogs: user ids as JSON strings come back as str after recovery.
        key_serializer="json",
        value_serializer="json",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        stream_wait_empty=False,
        datadir=str(settings.state_dir / "faust"),
        logging_config=None,
    )
    if settings.faust_fast_path:
        # Before any stream or the consumer exists: they bind the hooks when they are created.
        sensors_off(app)
    return app
