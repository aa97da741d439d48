"""Errors of the ``promptrec.streams`` package (Kafka clients, topics, settings)."""

from __future__ import annotations

__all__ = ["BrokerError", "ConfigError", "StreamsError", "TopicError"]


class StreamsError(Exception):
    """Base class of every error raised by ``promptrec.streams``."""


class BrokerError(StreamsError):
    """A Kafka broker could not be reached or answered with an error."""


class TopicError(StreamsError):
    """A topic could not be created or has an unexpected configuration."""


class ConfigError(StreamsError):
    """The settings are inconsistent or unusable."""
