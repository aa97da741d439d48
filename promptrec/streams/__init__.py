"""Kafka side of promptrec, and only that: the Faust app, one agent per input, followers of the
catalog and model-update topics, the recommendations publisher, the one Kafka client factory,
topics and the worker. Per-batch logic lives in :mod:`promptrec.serving`."""

from __future__ import annotations

__all__: list[str] = []
