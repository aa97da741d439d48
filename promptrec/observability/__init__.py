"""Observability: Prometheus metrics, liveness and readiness, consumer-lag arithmetic. Imports no
other promptrec package; :mod:`promptrec.streams.instrument` wires it into a worker."""

from __future__ import annotations

__all__: list[str] = []
