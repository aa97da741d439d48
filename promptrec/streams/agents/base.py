"""The small base class of the agents and the thread settings of engine-thread jobs."""

from __future__ import annotations

import faiss
import faust
import torch

from promptrec.streams.agents.context import AgentContext

__all__ = ["Agent", "set_threads"]


def set_threads(n: int) -> None:
    """torch and FAISS threads of the engine thread's next job (cheap: ~0.3 us)."""
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


class Agent:
    """An agent of the worker: it gets the shared context and registers itself on the app."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.within = ctx.settings.batch_within_ms / 1000.0  # micro-batch time limit

    def register(self) -> None:
        """Add the agent's streams, tasks and timers to ``ctx.app``."""
        raise NotImplementedError

    def raw_topic(self, *names: str) -> faust.TopicT:
        """A topic of raw bytes (keys and values): the agents decode records themselves."""
        return self.ctx.app.topic(*names, key_serializer="raw", value_serializer="raw")

    def agent_name(self, role: str) -> str:
        """The Faust agent name (the app id keeps workers of different apps apart)."""
        return f"{self.ctx.app.conf.id}.{role}"
