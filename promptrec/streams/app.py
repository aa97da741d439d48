"""The Faust app of a worker and its configuration."""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from promptrec.streams.clients import faust_credentials
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
    """A Faust app configured from the settings (agents are added by the pipeline)."""
    set_fetch_max_wait(settings.fetch_max_wait_ms)
    return faust.App(
        settings.effective_app_id,
        broker=settings.faust_broker,
        broker_credentials=faust_credentials(settings),
        store="memory://",
        # Table changelogs: user ids as JSON strings come back as str after recovery.
        key_serializer="json",
        value_serializer="json",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Short group timeouts: the embedded broker holds joins for the whole rebalance timeout.
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_acks=-1,
        producer_linger=0.001,
        producer_max_batch_size=settings.producer_batch_bytes,
        stream_wait_empty=False,
        datadir=str(settings.state_dir / "faust"),
        logging_config=None,
    )
