"""The trained scoring head inside a model checkpoint.

``promptrec train`` writes the head it fine-tuned offline into the model's safetensors file:
tensors ``head.w1``, ``head.b1``, ``head.w2``, ``head.a``, ``head.b`` and a ``head`` metadata
entry (JSON: format, dim, hidden, learning rate, what training chose). So
``PROMPTREC_ENCODER_CHECKPOINT=model.safetensors`` alone makes a worker start from it; a
checkpoint without them starts from a fresh (plain cosine) head, as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.head import HEAD_FORMAT, ScoringHead

__all__ = ["HEAD_META_KEY", "HEAD_PREFIX", "attach_head", "load_checkpoint_head"]

HEAD_PREFIX = "head."  # tensor names of the head inside a model checkpoint
HEAD_META_KEY = "head"  # metadata entry (JSON) of the head inside a model checkpoint


def attach_head(path: Path, head: ScoringHead, info: Mapping[str, Any] | None = None) -> None:
    """Adds ``head`` to the model checkpoint ``path`` (replacing a head already there).

    Raises:
        CheckpointError: The checkpoint cannot be read or written.
    """
    tensors, metadata = load_checkpoint(Path(path))
    kept = {k: v for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)}
    kept.update({HEAD_PREFIX + name: t for name, t in head.to_tensors().items()})
    meta: dict[str, str | int | float] = dict(metadata)
    meta[HEAD_META_KEY] = json.dumps(
        {
            "format": HEAD_FORMAT,
            "dim": head.dim,
            "hidden": head.hidden,
            "learning_rate": head.learning_rate,
            "info": dict(info or {}),
        }
    )
    save_checkpoint(Path(path), kept, meta)


def load_checkpoint_head(path: Path, learning_rate: float | None = None) -> ScoringHead | None:
    """The trained head inside a model checkpoint, or None when it has none.

    Args:
        path: The model checkpoint.
        learning_rate: Online learning rate of the returned head (None: the stored one).

    Raises:
        CheckpointError: The file is unreadable, or its head is corrupt (metadata, tensors).
    """
    tensors, metadata = load_checkpoint(Path(path))
    names = sorted(k for k in tensors if k.startswith(HEAD_PREFIX))
    raw = metadata.get(HEAD_META_KEY)
    if raw is None:
        if names:
            raise CheckpointError(f"checkpoint {path} has head tensors but no head metadata")
        return None
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
            raise ValueError(f"head format must be {HEAD_FORMAT!r}")
        dim, hidden = int(meta["dim"]), int(meta["hidden"])
        lr = float(meta["learning_rate"]) if learning_rate is None else float(learning_rate)
        head = ScoringHead(dim, hidden=hidden, learning_rate=lr)
    except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"checkpoint {path} has invalid head metadata: {exc}") from exc
    weights = {name.removeprefix(HEAD_PREFIX): tensors[name] for name in names}
    try:
        head.load_tensors(weights)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    return head
