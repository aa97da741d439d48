"""promptrec: a streaming, real-time recommender (pretrain, prompt, predict) on Kafka."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
