"""The Kafka-free serving domain: model state (engine), recommender, online learner, bounded user
histories, recent popularity, catalog updates and the head-sync arithmetic. Agents in
:mod:`promptrec.streams` call it once per micro-batch; it never imports Kafka or Faust."""

from __future__ import annotations

__all__: list[str] = []
