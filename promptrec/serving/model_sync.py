"""Scoring-head sync between workers through the compacted ``model-updates`` topic.

Every worker learns from the feedback of its own partitions. The shared model is defined as

    W = W_base + sum over worker incarnations k of D_k

where ``W_base`` is the same for every worker (the seeded fresh head, or the offline checkpoint)
and ``D_k`` is the *cumulative* change that incarnation ``k`` made with its own learning steps.
Each worker publishes its ``D_k`` (safetensors bytes, key = incarnation id) at most every
``model_sync_interval_s``; compaction keeps only the latest ``D_k`` per key, which is all that is
needed. A worker applies ``D_k - D_k(last applied)`` for every other key, so all workers converge
to the same weights, and a restarted worker rebuilds ``W`` by replaying the topic, with no retrain.

The model version is ``base version + sum of the published step counts``: it counts only updates
that reached the broker, so it never goes backwards across a crash (steps learned in the last
sync interval before a ``kill -9`` are lost, and were never counted).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from promptrec.encoder import ScoringHead
from promptrec.encoder.exceptions import CheckpointError
from promptrec.events.exceptions import InvalidEvent, ReasonCode

__all__ = ["MODEL_UPDATE_FORMAT", "HeadSync", "HeadUpdate"]

log = logging.getLogger(__name__)

MODEL_UPDATE_FORMAT = "promptrec-head-delta-v1"


@dataclass(frozen=True)
class HeadUpdate:
    """One incarnation's cumulative head change after ``seq`` learning steps."""

    key: str
    seq: int
    dim: int
    hidden: int
    delta: Mapping[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        """safetensors bytes with the metadata in the header (no pickle anywhere)."""
        meta = {
            "format": MODEL_UPDATE_FORMAT,
            "key": self.key,
            "seq": str(self.seq),
            "dim": str(self.dim),
            "hidden": str(self.hidden),
        }
        tensors = {name: t.detach().contiguous() for name, t in self.delta.items()}
        return bytes(safetensors_save(tensors, metadata=meta))

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> HeadUpdate:
        """Parse a record value.

        Raises:
            InvalidEvent: Not safetensors, or the metadata is missing or invalid.
        """
        if not raw:
            raise InvalidEvent(ReasonCode.empty_value, "empty model update")
        try:
            tensors = safetensors_load(bytes(raw))
            meta = _metadata(bytes(raw))
            if meta.get("format") != MODEL_UPDATE_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {MODEL_UPDATE_FORMAT!r}")
            update = cls(
                key=str(meta["key"]),
                seq=int(meta["seq"]),
                dim=int(meta["dim"]),
                hidden=int(meta["hidden"]),
                delta=tensors,
            )
        except (SafetensorError, KeyError, ValueError, TypeError) as exc:
            raise InvalidEvent(ReasonCode.bad_model_update, f"{type(exc).__name__}: {exc}") from exc
        if update.seq < 1:
            raise InvalidEvent(ReasonCode.bad_model_update, f"seq must be >= 1, got {update.seq}")
        return update


def _metadata(raw: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (the header is JSON after a u64 length)."""
    if len(raw) < 8:
        raise ValueError("too short for safetensors")
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("metadata is not an object")
    return {str(k): str(v) for k, v in meta.items()}


class HeadSync:
    """Tracks this incarnation's cumulative head change and merges everyone else's.

    Every method except :meth:`key` runs on the engine thread (the head is not thread-safe); the
    lock only guards the counters read by the metrics timer.

    Args:
        head: The worker's head, changed in place.
        key: This incarnation's id (unique per process start).
    """

    def __init__(self, head: ScoringHead, key: str) -> None:
        self.head = head
        self.key = key
        self._own = _zeros_like(head.to_tensors())  # cumulative own change D_key
        self._own_steps = 0
        self._published_steps = 0
        self._base_version = head.version
        self._applied: dict[str, tuple[int, dict[str, torch.Tensor]]] = {}  # key -> (seq, D_k)
        self._lock = threading.Lock()

    # -- counters -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Base version plus every published step (own and other workers')."""
        with self._lock:
            remote = sum(seq for seq, _ in self._applied.values())
            return self._base_version + remote + self._published_steps

    @property
    def unpublished_steps(self) -> int:
        """Own learning steps not yet published."""
        return self._own_steps - self._published_steps

    @property
    def peers(self) -> int:
        """Other incarnations whose updates have been applied."""
        return len(self._applied)

    # -- engine-thread operations -------------------------------------------------------------

    def rebase(self, base: ScoringHead) -> None:
        """Restart from ``base`` before replaying the topic (drops a disk-restored head).

        Raises:
            CheckpointError: ``base`` does not fit the head.
        """
        self.head.load_tensors(base.to_tensors())
        self._base_version = base.version
        self._own = _zeros_like(self._own)
        self._own_steps = self._published_steps = 0
        self._applied.clear()
        self.head.set_version(self.version)

    def learn_many(self, users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> float:
        """One head step (:meth:`ScoringHead.learn_many`), recorded in the own delta."""
        before = self.head.to_tensors()
        loss = self.head.learn_many(users, items, labels)
        after = self.head.to_tensors()
        for name, value in after.items():
            self._own[name] += value - before[name]
        self._own_steps += 1
        self.head.set_version(self.version)
        return loss

    def pending(self) -> HeadUpdate | None:
        """The update to publish now, or None when every own step is published."""
        if self._own_steps == self._published_steps:
            return None
        return HeadUpdate(
            key=self.key,
            seq=self._own_steps,
            dim=self.head.dim,
            hidden=self.head.hidden,
            delta={name: t.clone() for name, t in self._own.items()},
        )

    def published(self, seq: int) -> None:
        """The update with ``seq`` steps is durable on the broker."""
        with self._lock:
            self._published_steps = max(self._published_steps, seq)
        self.head.set_version(self.version)

    def apply(self, update: HeadUpdate) -> bool:
        """Merge another incarnation's update; False when it is ours or not newer.

        Raises:
            InvalidEvent: The update does not fit this head (shape, non-finite values).
        """
        if update.key == self.key:
            return False
        if update.dim != self.head.dim or update.hidden != self.head.hidden:
            raise InvalidEvent(
                ReasonCode.bad_model_update,
                f"head {update.dim}x{update.hidden} does not fit {self.head.dim}x"
                f"{self.head.hidden}",
            )
        seq, last = self._applied.get(update.key, (0, None))
        if update.seq <= seq:
            return False
        delta = {name: t.to(torch.float32) for name, t in update.delta.items()}
        step = delta if last is None else {n: delta[n] - last[n] for n in delta if n in last}
        try:
            self.head.add_tensors(step)
        except CheckpointError as exc:
            raise InvalidEvent(ReasonCode.bad_model_update, str(exc)) from exc
        with self._lock:
            self._applied[update.key] = (update.seq, delta)
        self.head.set_version(self.version)
        return True


def _zeros_like(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: torch.zeros_like(t) for name, t in tensors.items()}
