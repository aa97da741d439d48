"""Scoring head: a small torch model on top of frozen user/item vectors, learned online.

For a user vector ``u`` and an item vector ``v`` (both ``(dim,)``, L2-normalised)::

    cos   = u . v
    h     = relu(W1 (dim * (u * v)) + b1)      # (hidden,)
    logit = a * cos + w2 . h + b

The element-wise product is scaled by ``dim`` so its entries are O(1) for unit vectors (they are
O(1/dim) otherwise, which would make ``W1`` learn very slowly); this is a fixed reparametrisation
of ``W1``. ``a`` starts at 10 (cosines are small) and ``w2``, ``b`` start at zero, so a fresh head
ranks exactly by cosine similarity and learning only ever refines that order. Online updates are
single Adam steps of binary cross-entropy on labelled (user, item) pairs; method names follow
River (``learn_one``/``learn_many``, ``predict_proba_many``).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.settings import EncoderSettings

__all__ = ["HEAD_FORMAT", "ScoringHead"]

HEAD_FORMAT = "promptrec-head-v1"
_INITIAL_COSINE_SCALE = 10.0
_TENSOR_NAMES = ("w1", "b1", "w2", "a", "b")
# Scratch buffers of :meth:`ScoringHead.score_rows` are kept between calls up to this size (one
# 64-query batch of 100 candidates at 384 dims needs 11.5 MB); larger calls allocate afresh.
_KEEP_WORKSPACE_BYTES = 64 << 20


class _HeadNet(torch.nn.Module):
    """The parameters and forward pass; inputs broadcast over leading axes."""

    def __init__(self, dim: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.dim = dim
        # LeCun-style init from a private generator: reproducible, global RNG untouched.
        self.w1 = torch.nn.Parameter(torch.randn(hidden, dim, generator=generator) / dim**0.5)
        self.b1 = torch.nn.Parameter(torch.zeros(hidden))
        self.w2 = torch.nn.Parameter(torch.zeros(hidden))
        self.a = torch.nn.Parameter(torch.tensor(_INITIAL_COSINE_SCALE))
        self.b = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        product = users * items  # (..., dim)
        cos = product.sum(dim=-1)  # (...,)
        h = F.relu(F.linear(product * self.dim, self.w1, self.b1))  # (..., hidden)
        return self.a * cos + h @ self.w2 + self.b  # (...,) logits

    def score_products(self, products: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` from the element-wise products ``u * v``, ``(m, dim)`` -> ``(m,)``.

        One GEMM gives the interaction layer and, as one more output column (weights all 1),
        the cosine; ``out`` is ``(m, hidden + 1)`` scratch that the bias and ReLU overwrite.
        """
        hidden = self.w1.shape[0]
        weights = torch.cat([self.w1 * self.dim, torch.ones_like(self.w1[:1])])  # (hidden+1, dim)
        torch.mm(products, weights.t(), out=out)  # (m, hidden + 1)
        h = out[:, :hidden].add_(self.b1).relu_()  # (m, hidden), in place
        return torch.mv(h, self.w2).add_(out[:, hidden] * self.a).add_(self.b)  # (m,) logits

    def score_candidates(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for ``(b, dim)`` users against ``(b, n, dim)`` items -> ``(b, n)``.

        Same function, reassociated: ``W1 (u * v) = (W1 * u) v``, so one batched matmul per
        user replaces the ``(b, n, dim)`` elementwise product, and the cosine rides along as
        one more output column.
        """
        # (b, hidden + 1, dim): the interaction layer scaled by each user, then the user itself.
        per_user = torch.cat(
            [(self.w1 * self.dim)[None, :, :] * users[:, None, :], users[:, None, :]], dim=1
        )
        z = torch.bmm(items, per_user.transpose(1, 2))  # (b, n, hidden + 1)
        h = F.relu(z[..., :-1] + self.b1)  # (b, n, hidden)
        return self.a * z[..., -1] + h @ self.w2 + self.b  # (b, n) logits


def _tensor(
    name: str, array: np.ndarray, shape: tuple[int | None, ...], *, check: bool = True
) -> torch.Tensor:
    """Checks shape (``None`` = any size) and finiteness; returns a float32 CPU tensor."""
    x = np.asarray(array, dtype=np.float32)
    # ndim is compared first, so the zip below always pairs every axis.
    if x.ndim != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, x.shape, strict=True)
    ):
        want = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if check and not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values")
    return torch.from_numpy(np.ascontiguousarray(x))


class ScoringHead:
    """Online-learned scorer of (user, item) vector pairs.

    Args:
        dim: Width of user and item vectors.
        hidden: Hidden units of the interaction layer.
        learning_rate: Adam learning rate of each online step.
        seed: Seed of the ``W1`` initialisation.

    Raises:
        ValueError: A parameter is out of range.
    """

    def __init__(
        self, dim: int, hidden: int = 64, learning_rate: float = 1e-2, seed: int = 0
    ) -> None:
        if dim < 1 or hidden < 1:
            raise ValueError(f"dim and hidden must be >= 1, got dim={dim}, hidden={hidden}")
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
        self._dim = int(dim)
        self._hidden = int(hidden)
        self._learning_rate = float(learning_rate)
        self._seed = int(seed)
        self._net = _HeadNet(self._dim, self._hidden, torch.Generator().manual_seed(self._seed))
        self._optimizer = self._new_optimizer()
        self._version = 0
        self._scratch = threading.local()  # per-thread buffers of score_rows

    @classmethod
    def from_settings(cls, dim: int, settings: EncoderSettings) -> ScoringHead:
        """Builds a fresh head with the hyper-parameters of :class:`EncoderSettings`."""
        return cls(dim, hidden=settings.head_hidden, learning_rate=settings.learning_rate)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._net.parameters(), lr=self._learning_rate)

    @property
    def dim(self) -> int:
        """Width of user and item vectors."""
        return self._dim

    @property
    def hidden(self) -> int:
        """Hidden units of the interaction layer."""
        return self._hidden

    @property
    def learning_rate(self) -> float:
        """Adam learning rate."""
        return self._learning_rate

    @property
    def version(self) -> int:
        """Number of learning steps taken (restored by :meth:`load`)."""
        return self._version

    def score_many(self, users: np.ndarray, items: np.ndarray, *, check: bool = True) -> np.ndarray:
        """Logits of ``n`` candidate items for each of ``b`` users, in one forward pass.

        Args:
            users: ``(b, dim)`` user vectors.
            items: ``(b, n, dim)`` candidate item vectors per user.
            check: Check that every value is finite. The recommender passes False for vectors
                that come from the index, which checked them on the way in.

        Returns:
            ``(b, n)`` float32 logits.

        Raises:
            ValueError: Shapes disagree or (with ``check``) a value is not finite.
        """
        u = _tensor("users", users, (None, self._dim), check=check)
        v = _tensor("items", items, (u.shape[0], None, self._dim), check=check)
        with torch.inference_mode():
            logits = self._net.score_candidates(u, v)  # (b, n)
        result: np.ndarray = logits.numpy().astype(np.float32, copy=False)
        return result

    def score_rows(self, users: np.ndarray, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:meth:`score_many` of ``users`` against ``table[rows]``, with reused buffers.

        The recommender's path: the candidates are gathered from the index storage straight
        into a scratch buffer kept between calls (a fresh ``(b, n, dim)`` array per batch costs
        page faults), multiplied by their user in place, and scored by one ``(b * n, dim) x
        (dim, hidden + 1)`` GEMM. The same function as :meth:`score_many` up to float rounding.
        Shapes and rows are checked, values are not: the users are the recommender's own and
        the table rows were checked for finiteness when they were indexed.

        Args:
            users: ``(b, dim)`` float32 user vectors.
            table: ``(N, dim)`` float32 item vectors (C-contiguous).
            rows: ``(b, n)`` int64 rows of ``table``, each in ``[0, N)``.

        Returns:
            ``(b, n)`` float32 logits.

        Raises:
            ValueError: Shapes disagree or a row is outside the table.
        """
        dim = self._dim
        if rows.ndim != 2 or users.shape != (rows.shape[0], dim) or table.shape[1:] != (dim,):
            raise ValueError(
                f"score_rows needs users (b, {dim}), table (N, {dim}) and rows (b, n); got "
                f"{users.shape}, {table.shape} and {rows.shape}"
            )
        b, n = rows.shape
        m = b * n
        if m == 0:
            return np.zeros((b, n), dtype=np.float32)
        if rows.min() < 0 or rows.max() >= len(table):
            raise ValueError(f"rows must lie in [0, {len(table)}), got {rows.min()}..{rows.max()}")
        products = self._buffer("products", m * dim).reshape(b, n, dim)
        np.take(table, rows, axis=0, out=products, mode="clip")  # rows are valid: no clipping
        np.multiply(products, np.asarray(users, dtype=np.float32)[:, None, :], out=products)
        z = torch.from_numpy(self._buffer("hidden", m * (self._hidden + 1)))
        with torch.inference_mode():
            logits = self._net.score_products(
                torch.from_numpy(products.reshape(m, dim)), z.view(m, self._hidden + 1)
            )
        return logits.numpy().reshape(b, n)

    def _buffer(self, name: str, size: int) -> np.ndarray:
        """A float32 scratch vector of ``size`` for this thread (kept when not too large)."""
        buf: np.ndarray | None = getattr(self._scratch, name, None)
        if buf is not None and buf.size >= size:
            return buf[:size]
        fresh = np.empty(size, dtype=np.float32)
        if size * 4 <= _KEEP_WORKSPACE_BYTES:
            setattr(self._scratch, name, fresh)
        return fresh

    def predict_proba_many(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Click probabilities of ``m`` (user, item) pairs: ``(m, dim)`` each -> ``(m,)`` float32.

        Raises:
            ValueError: Shapes disagree or a value is not finite.
        """
        u = _tensor("users", users, (None, self._dim))
        v = _tensor("items", items, (u.shape[0], self._dim))
        with torch.inference_mode():
            proba = torch.sigmoid(self._net(u, v))  # (m,)
        result: np.ndarray = proba.numpy().astype(np.float32, copy=False)
        return result

    def learn_many(self, users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> float:
        """One Adam step of mean binary cross-entropy on ``m`` labelled pairs.

        Args:
            users: ``(m, dim)`` user vectors.
            items: ``(m, dim)`` item vectors.
            labels: ``(m,)`` targets in [0, 1] (1 = positive feedback).

        Returns:
            The batch loss before the step.

        Raises:
            ValueError: Empty batch, shapes disagree, a value is not finite or a label is outside
                [0, 1]; the weights and ``version`` are left unchanged.
        """
        u = _tensor("users", users, (None, self._dim))
        m = u.shape[0]
        if m == 0:
            raise ValueError("learn_many needs at least one example")
        v = _tensor("items", items, (m, self._dim))
        y = _tensor("labels", labels, (m,))
        if bool(((y < 0) | (y > 1)).any()):
            raise ValueError("labels must lie in [0, 1]")
        self._net.train()
        self._optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(self._net(u, v), y)
        loss.backward()  # type: ignore[no-untyped-call]
        self._optimizer.step()
        self._net.eval()
        self._version += 1
        return float(loss.detach())

    def learn_one(self, user: np.ndarray, item: np.ndarray, label: float) -> float:
        """One Adam step on a single ``(dim,)`` user, ``(dim,)`` item and a label in [0, 1].

        Raises:
            ValueError: As :meth:`learn_many`.
        """
        u = _tensor("user", user, (self._dim,))
        v = _tensor("item", item, (self._dim,))
        return self.learn_many(
            u.numpy()[None, :], v.numpy()[None, :], np.array([label], dtype=np.float32)
        )

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Copies of the weights, by name (``w1``, ``b1``, ``w2``, ``a``, ``b``)."""
        return {name: getattr(self._net, name).detach().clone() for name in _TENSOR_NAMES}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Replaces the weights with ``tensors`` (as from :meth:`to_tensors`); resets Adam state.

        Raises:
            CheckpointError: A tensor is missing, has the wrong shape or is not finite; the
                weights are left unchanged.
        """
        checked = self._checked(tensors, "head weights")
        with torch.no_grad():
            for name, value in checked.items():
                getattr(self._net, name).copy_(value)
        self._optimizer = self._new_optimizer()

    def _checked(self, tensors: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
        """Every named tensor, float32, with the weight's shape and finite values."""
        checked: dict[str, torch.Tensor] = {}
        for name in _TENSOR_NAMES:
            if name not in tensors:
                raise CheckpointError(f"{what} lack tensor {name!r}")
            target = getattr(self._net, name)
            value = tensors[name].detach().to(torch.float32)
            if tuple(value.shape) != tuple(target.shape):
                raise CheckpointError(
                    f"head tensor {name!r} has shape {tuple(value.shape)}, "
                    f"expected {tuple(target.shape)}"
                )
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"head tensor {name!r} holds non-finite values")
            checked[name] = value
        return checked

    def add_tensors(self, delta: dict[str, torch.Tensor]) -> None:
        """Adds ``delta`` (same names and shapes as :meth:`to_tensors`) to the weights in place.

        Used to merge other workers' updates; the Adam state is kept, since the local
        optimizer still describes this worker's own gradient history.

        Raises:
            CheckpointError: A tensor is missing, has the wrong shape or is not finite; the
                weights are left unchanged.
        """
        checked = self._checked(delta, "head delta")
        with torch.no_grad():
            for name, value in checked.items():
                getattr(self._net, name).add_(value)

    def set_version(self, version: int) -> None:
        """Sets the version counter (model sync counts the updates of every worker)."""
        if version < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        self._version = int(version)

    def save(self, path: Path) -> None:
        """Writes weights and metadata to a safetensors checkpoint, atomically.

        Raises:
            CheckpointError: The file cannot be written.
        """
        save_checkpoint(
            path,
            self.to_tensors(),
            {
                "format": HEAD_FORMAT,
                "dim": self._dim,
                "hidden": self._hidden,
                "learning_rate": self._learning_rate,
                "version": self._version,
                "seed": self._seed,
            },
        )

    @classmethod
    def load(cls, path: Path) -> ScoringHead:
        """Reads a head written by :meth:`save`; the optimizer starts fresh.

        Raises:
            CheckpointError: The file is missing, corrupt, not safetensors, or not a head
                checkpoint of a known format.
        """
        tensors, meta = load_checkpoint(path)
        if meta.get("format") != HEAD_FORMAT:
            raise CheckpointError(
                f"checkpoint {path} has format {meta.get('format')!r}, expected {HEAD_FORMAT!r}"
            )
        try:
            dim = int(json.loads(meta["dim"]))
            hidden = int(json.loads(meta["hidden"]))
            learning_rate = float(json.loads(meta["learning_rate"]))
            version = int(json.loads(meta["version"]))
            seed = int(json.loads(meta.get("seed", "0")))
            head = cls(dim, hidden=hidden, learning_rate=learning_rate, seed=seed)
        except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise CheckpointError(f"checkpoint {path} has invalid metadata: {exc!r}") from exc
        if version < 0:
            raise CheckpointError(f"checkpoint {path} has negative version {version}")
        try:
            head.load_tensors(tensors)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from exc
        head._version = version
        return head

    def __repr__(self) -> str:
        return (
            f"ScoringHead(dim={self._dim}, hidden={self._hidden}, "
            f"learning_rate={self._learning_rate}, version={self._version})"
        )
