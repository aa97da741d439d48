"""User tower: a user vector from the recency-weighted item history and the encoded user prompt.

``user = normalise((1 - w) * normalise(sum_j decay**(n-1-j) * h_j) + w * normalise(profile))``
where ``h_0 .. h_{n-1}`` are the item vectors oldest -> newest. The weight ``w`` applies only when
both parts exist; with one part the user vector is that part; with neither it is all zeros and
``has_signal`` is False.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["UserTower"]

_EPS = 1e-12


def _normalise_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalises ``x`` (b, dim); returns (normalised rows, mask of rows with non-zero norm)."""
    norms = np.linalg.norm(x, axis=1)  # (b,)
    ok = norms > _EPS
    out = np.zeros_like(x)
    out[ok] = x[ok] / norms[ok, None]
    return out, ok


class UserTower:
    """Builds user vectors in the item space.

    Args:
        recency_decay: Weight factor per step into the past, in (0, 1]; 1 is a plain mean.
        profile_weight: Share of the profile vector when history exists too, in [0, 1].

    Raises:
        ValueError: A parameter is out of range.
    """

    def __init__(self, recency_decay: float = 0.85, profile_weight: float = 0.3) -> None:
        if not 0.0 < recency_decay <= 1.0:
            raise ValueError(f"recency_decay must be in (0, 1], got {recency_decay}")
        if not 0.0 <= profile_weight <= 1.0:
            raise ValueError(f"profile_weight must be in [0, 1], got {profile_weight}")
        self.recency_decay = float(recency_decay)
        self.profile_weight = float(profile_weight)

    def build_many(
        self, histories: Sequence[np.ndarray], profiles: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Builds one user vector per (history, profile) pair.

        Args:
            histories: ``histories[i]`` is ``(n_i, dim)`` item vectors, oldest first; ``n_i`` may
                be 0.
            profiles: ``profiles[i]`` is the ``(dim,)`` encoded user prompt, or ``None``.

        Returns:
            ``(users, has_signal)``: ``(b, dim)`` float32 L2-normalised rows (zero rows where
            there is no signal) and ``(b,)`` bool. With ``b == 0`` the users array is ``(0, 0)``.

        Raises:
            ValueError: Lengths or shapes disagree, or a vector is not finite.
        """
        b = len(histories)
        if len(profiles) != b:
            raise ValueError(f"{b} histories but {len(profiles)} profiles")
        dim = self._infer_dim(histories, profiles)
        if b == 0:
            return np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=bool)

        # Pad histories to (b, n_max, dim), newest item aligned to the last slot, so one
        # weight row (b, n_max) of decay powers serves every user; padding gets weight 0.
        lengths = np.array([len(h) for h in histories], dtype=np.int64)  # (b,)
        n_max = int(lengths.max())
        padded = np.zeros((b, n_max, dim), dtype=np.float64)
        for i, h in enumerate(histories):
            if len(h):
                padded[i, n_max - len(h) :] = h
        steps_back = np.arange(n_max - 1, -1, -1, dtype=np.float64)  # (n_max,) newest -> 0
        weights = np.where(
            np.arange(n_max)[None, :] >= (n_max - lengths)[:, None],
            self.recency_decay ** steps_back[None, :],
            0.0,
        )  # (b, n_max)
        hist, has_hist = _normalise_rows(np.einsum("bn,bnd->bd", weights, padded))  # (b, dim)

        prof_raw = np.zeros((b, dim), dtype=np.float64)
        for i, p in enumerate(profiles):
            if p is not None:
                prof_raw[i] = p
        prof, has_prof = _normalise_rows(prof_raw)  # (b, dim)

        both = (has_hist & has_prof)[:, None]
        w = self.profile_weight
        mixed = np.where(both, (1.0 - w) * hist + w * prof, hist + prof)  # one part is zero
        users, has_signal = _normalise_rows(mixed)
        return users.astype(np.float32), has_signal

    @staticmethod
    def _infer_dim(histories: Sequence[np.ndarray], profiles: Sequence[np.ndarray | None]) -> int:
        """Checks shapes and finiteness; returns the common vector width (0 if none is known)."""
        dims: set[int] = set()
        for i, h in enumerate(histories):
            h = np.asarray(h)
            if h.ndim != 2:
                raise ValueError(f"histories[{i}] must be 2-D (n, dim), got shape {h.shape}")
            if not np.isfinite(h).all():
                raise ValueError(f"histories[{i}] holds non-finite values")
            dims.add(h.shape[1])
        for i, p in enumerate(profiles):
            if p is None:
                continue
            p = np.asarray(p)
            if p.ndim != 1:
                raise ValueError(f"profiles[{i}] must be 1-D (dim,), got shape {p.shape}")
            if not np.isfinite(p).all():
                raise ValueError(f"profiles[{i}] holds non-finite values")
            dims.add(p.shape[0])
        if len(dims) > 1:
            raise ValueError(f"vector widths disagree: {sorted(dims)}")
        return dims.pop() if dims else 0

    def __repr__(self) -> str:
        return (
            f"UserTower(recency_decay={self.recency_decay}, profile_weight={self.profile_weight})"
        )
