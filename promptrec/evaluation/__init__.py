"""Evaluation: datasets, the leave-one-out protocol, baselines, offline evaluation and the stream
evaluation through a real broker and worker."""

from __future__ import annotations

__all__: list[str] = []
