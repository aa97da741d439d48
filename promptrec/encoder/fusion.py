"""Late fusion of the trained score with the frozen text zero-shot score, as one inner product.

The fused score of user ``u`` and item ``i`` is

    s(u, i) = (1 - alpha) * cos(t_u, t_i) + alpha * cos(z_u, z_i)

where ``t`` are the trained model's unit vectors (adapter + ID vector, sequence model) and ``z``
the zero-shot text path: ``z_i`` the frozen encoder's item vector minus a fixed catalog mean,
re-normalised, and ``z_u`` the recency-weighted mean of the history's ``z`` (the
:class:`~promptrec.encoder.towers.UserTower` of the text zero-shot baseline). ``alpha`` in
``[0, 1]`` is chosen on validation (``alpha = 0``: the trained model alone, ``alpha = 1``: the
zero-shot path alone); ``w = alpha / (1 - alpha)`` is the same fusion written as
``cos_t + w * cos_z``.

The two parts are concatenated into one vector per side, so the worker keeps ONE inner-product
index and the score stays exact (no re-ranking stage that could miss a cold item)::

    item = [sqrt(1 - alpha) t_i | sqrt(alpha) z_i]     # (dim + text_dim,), unit norm
    user = [sqrt(1 - alpha) t_u | sqrt(alpha) z_u]     # divided by its norm

so ``user . item = s(u, i) / |user|``: the same ranking per user as ``s``.

Cold items (no ID vector) can be scored by the frozen text path alone, calibrated so they can
compete with warm items whose trained cosines are larger (``cold_scale`` lambda and
``cold_bias`` c, chosen on validation; ``cold_scale = 0`` leaves them on the adapter like warm
items)::

    s(u, cold i) = lambda * alpha * cos(z_u, z_i) + c
    warm item = [sqrt(1 - alpha) t_i | sqrt(alpha) z_i          | 0                  | 0  ]
    cold item = [0                   | lambda sqrt(alpha) z_i   | sign(c) sqrt(|c|)  | t_i]
    user      = [sqrt(1 - alpha) t_u | sqrt(alpha) z_u          | sqrt(|c|)          | 0  ]

The last two blocks exist only when ``cold_scale > 0``; the last one keeps a cold item's adapted
vector (which users do not score) so that it can still be the sequence model's input when the
item is in a history. The index rows hold
both parts, and :meth:`TextFusion.split` recovers them from a history's index vectors (the
sequence model reads the trained part, the text tower the text part). Cost: the index width
grows from ``dim`` to ``dim + text_dim`` (64 -> 448 for MiniLM).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.towers import UserTower

__all__ = ["FUSION_ALPHAS", "TextFusion", "centred_text"]

# Validation grid of alpha; both ends included, so the fused model is never worse on
# validation than either the trained model (0) or the zero-shot path (1).
FUSION_ALPHAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
_EPS = 1e-12


def centred_text(text: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``(n, text_dim)`` unit rows of ``text - mean`` (a row equal to the mean stays zero)."""
    z = np.asarray(text, dtype=np.float32) - np.asarray(mean, dtype=np.float32)[None, :]
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), _EPS)


@dataclass
class TextFusion:
    """The fusion of the module docstring.

    Args:
        alpha: Share of the zero-shot cosine, in ``(0, 1]`` (0 means no fusion at all: the
            model then carries no TextFusion and its vectors are unchanged).
        decay: Recency decay of the text user vector, in ``(0, 1]``.
        recent: Newest history items of the text user vector (0: all).
        mean: ``(text_dim,)`` catalog mean of the frozen text vectors, fixed at training time
            (new items in the worker are centred with the same vector).
        dim: Width of the trained vectors.
        cold_scale: lambda of the cold-item score (0: cold items like warm ones).
        cold_bias: c of the cold-item score.
    """

    alpha: float
    decay: float
    recent: int
    mean: np.ndarray
    dim: int
    cold_scale: float = 0.0
    cold_bias: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"fusion alpha must be in (0, 1], got {self.alpha}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"fusion decay must be in (0, 1], got {self.decay}")
        self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        if not np.isfinite(self.mean).all():
            raise ValueError("fusion text mean holds non-finite values")
        if not (self.cold_scale >= 0.0 and math.isfinite(self.cold_scale)):
            raise ValueError(f"fusion cold_scale must be finite and >= 0, got {self.cold_scale}")
        if not math.isfinite(self.cold_bias) or (self.cold_bias and not self.cold_scale):
            raise ValueError(f"fusion cold_bias {self.cold_bias} needs a cold_scale > 0")
        self.tower = UserTower(recency_decay=self.decay, profile_weight=0.0)

    @property
    def weight(self) -> float:
        """``w`` of ``cos_t + w * cos_z`` (infinite at ``alpha = 1``)."""
        return math.inf if self.alpha >= 1.0 else self.alpha / (1.0 - self.alpha)

    @property
    def text_dim(self) -> int:
        """Width of the text part."""
        return int(self.mean.shape[0])

    @property
    def cold(self) -> bool:
        """Whether cold items get the calibrated text-alone score (one more coordinate)."""
        return self.cold_scale > 0.0

    @property
    def width(self) -> int:
        """Width of a fused vector: ``dim + text_dim`` (+ ``1 + dim`` with the cold calibration)."""
        return self.dim + self.text_dim + (1 + self.dim if self.cold else 0)

    def items(
        self, trained: np.ndarray, text: np.ndarray, cold: np.ndarray | None = None
    ) -> np.ndarray:
        """``(n, width)`` fused item vectors from ``(n, dim)`` trained and ``(n, text_dim)``
        frozen text vectors; ``cold`` ``(n,)`` bool marks items without an ID vector."""
        z = centred_text(text, self.mean)  # (n, text_dim)
        a = self.alpha
        t = np.asarray(trained, dtype=np.float32)
        parts = [math.sqrt(1.0 - a) * t, math.sqrt(a) * z]
        if self.cold:
            mask = np.zeros(len(z), dtype=bool) if cold is None else np.asarray(cold, dtype=bool)
            col = mask[:, None]
            parts[0] = np.where(col, 0.0, parts[0])
            parts[1] = np.where(col, self.cold_scale * parts[1], parts[1])
            c = self.cold_bias
            parts.append(np.where(col, math.copysign(math.sqrt(abs(c)), c), 0.0))
            parts.append(np.where(col, t, 0.0))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def split(self, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The trained ``(n, dim)`` and text ``(n, text_dim)`` parts of fused item vectors.

        A part with weight 0 (the trained one at ``alpha = 1``) comes back as zeros; it is
        never used then.
        """
        fused = np.asarray(fused, dtype=np.float32)
        if fused.ndim != 2 or fused.shape[1] != self.width:
            raise ValueError(f"fused vectors must be (n, {self.width}), got {fused.shape}")
        a, d = self.alpha, self.dim
        trained = fused[:, :d] / math.sqrt(1.0 - a) if a < 1.0 else np.zeros_like(fused[:, :d])
        if self.cold:
            trained = trained + fused[:, -d:]  # a cold row keeps its adapted vector at the end
        # Text rows are unit (or zero) before scaling: re-normalising undoes sqrt(alpha) and
        # a cold row's lambda alike.
        text = centred_text(fused[:, d : d + self.text_dim], np.zeros(self.text_dim))
        return trained, text

    def text_users(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(b, text_dim)`` unit text user vectors (zero rows for empty histories).

        ``histories[i]`` is ``(n_i, text_dim)`` centred text item vectors, oldest first.
        """
        hist = [
            np.asarray(h, dtype=np.float32)[-self.recent :] if self.recent else h for h in histories
        ]
        users, _ = self.tower.build_many(hist, [None] * len(hist))
        if users.shape[1] == 0:  # no history at all in the batch
            return np.zeros((len(hist), self.text_dim), dtype=np.float32)
        return users

    def users(self, trained: np.ndarray, text_users: np.ndarray) -> np.ndarray:
        """``(b, width)`` unit fused user vectors from both ``(b, dim)`` / ``(b, text_dim)``."""
        a = self.alpha
        parts = [math.sqrt(1.0 - a) * np.asarray(trained, dtype=np.float32)]
        parts.append(math.sqrt(a) * np.asarray(text_users, dtype=np.float32))
        if self.cold:
            b = len(parts[0])
            parts.append(np.full((b, 1), math.sqrt(abs(self.cold_bias)), np.float32))
            parts.append(np.zeros((b, self.dim), np.float32))
        fused = np.concatenate(parts, axis=1)
        norms = np.linalg.norm(fused, axis=1, keepdims=True)
        return (fused / np.maximum(norms, _EPS)).astype(np.float32)

    def scores(self, trained_scores: np.ndarray, text_scores: np.ndarray) -> np.ndarray:
        """The fused score ``(1 - alpha) * trained + alpha * text`` (the known answer)."""
        return (1.0 - self.alpha) * trained_scores + self.alpha * text_scores

    def metadata(self) -> str:
        """JSON of the scalars (the mean is stored as a tensor)."""
        return json.dumps(
            {
                "alpha": self.alpha,
                "decay": self.decay,
                "recent": self.recent,
                "cold_scale": self.cold_scale,
                "cold_bias": self.cold_bias,
            }
        )

    @classmethod
    def from_metadata(cls, text: str, mean: np.ndarray, dim: int) -> TextFusion:
        """Inverse of :meth:`metadata`.

        Raises:
            CheckpointError: The JSON or a value is invalid.
        """
        try:
            data = json.loads(text)
            return cls(
                float(data["alpha"]),
                float(data["decay"]),
                int(data["recent"]),
                mean,
                dim,
                float(data.get("cold_scale", 0.0)),
                float(data.get("cold_bias", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid fusion record in the checkpoint: {exc}") from exc
