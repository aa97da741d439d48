"""The worker's Faust agents, one class per agent, wired by :class:`Pipeline`.

The agents are thin: they turn Faust events into the serving domain's records, hand whole
micro-batches to the domain classes on the engine thread, commit state, publish results and
dead-letter whatever cannot be processed, with the original bytes and a reason. Nothing is
dropped silently and no record stops the worker. They share an explicit
:class:`AgentContext`; none reaches into another.
"""

from __future__ import annotations

from promptrec.streams.agents.context import AgentContext, Readiness
from promptrec.streams.agents.pipeline import Pipeline
from promptrec.streams.agents.stages import DeadLetters, StageFailed, StageRunner

__all__ = ["AgentContext", "DeadLetters", "Pipeline", "Readiness", "StageFailed", "StageRunner"]
