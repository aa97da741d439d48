"""Kafka side of promptrec: Faust app, topics, schemas, agents, embedded broker, CLI."""

from __future__ import annotations

__all__: list[str] = []
