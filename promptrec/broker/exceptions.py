"""Errors of the embedded broker."""

from __future__ import annotations

__all__ = ["EmbeddedBrokerError"]


class EmbeddedBrokerError(Exception):
    """The embedded broker failed to start or to answer."""
