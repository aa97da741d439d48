"""The candidate-index interface and the storage every FAISS adapter shares.

Items are string ids; vectors are float32 rows, normally L2-normalised, scored by inner product.
The authoritative copy of the data is numpy (a capacity-doubling matrix, row <-> id maps and a
version tag per item); the FAISS structure of an adapter mirrors rows ``0..n-1`` and its labels
are row numbers. Appending new ids goes straight into FAISS (cheap, so new items are searchable at
once); replacing or removing rows marks FAISS dirty and it is rebuilt on the next search.
"""

from __future__ import annotations

import abc
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from promptrec.index.exceptions import DimensionMismatch, SnapshotError
from promptrec.index.settings import IndexSettings

__all__ = ["SNAPSHOT_FORMAT", "CandidateIndex"]

SNAPSHOT_FORMAT = "promptrec-index-v1"


class CandidateIndex(abc.ABC):
    """Upsert, remove, look up and batch-search item vectors by string id."""

    kind: ClassVar[str] = "abstract"

    def __init__(self, dim: int, settings: IndexSettings | None = None) -> None:
        if dim < 1:
            raise DimensionMismatch(f"dimension must be positive, got {dim}")
        self._dim = dim
        self.settings = settings or IndexSettings()
        self._vecs = np.zeros((16, dim), dtype=np.float32)  # (capacity, dim)
        self._ids: list[str] = []  # row -> id
        self._rows: dict[str, int] = {}  # id -> row
        self._tags: dict[str, str] = {}
        self._dirty = False
        self._synced = 0  # rows 0.._synced-1 are in the FAISS structure

    # -- what an adapter provides ------------------------------------------------------------

    @property
    def device(self) -> str:
        """Where searches run: ``cpu`` or ``cuda``."""
        return "cpu"

    @abc.abstractmethod
    def _reset_backend(self) -> None:
        """Empty the FAISS structure."""

    @abc.abstractmethod
    def _add_backend(self, vectors: np.ndarray) -> None:
        """Append rows (n, dim) to the FAISS structure (labels continue from its size)."""

    @abc.abstractmethod
    def _search_backend(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search: (scores (b, k) float32, rows (b, k) int64, -1 where missing)."""

    # -- the interface -----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector width."""
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def ids(self) -> list[str]:
        """Every item id, in row order."""
        return list(self._ids)

    def tag_of(self, item_id: str) -> str | None:
        """The version tag stored with an item (None when absent or untagged)."""
        return self._tags.get(item_id)

    def upsert_many(
        self, ids: Sequence[str], vectors: np.ndarray, tags: Sequence[str] | None = None
    ) -> None:
        """Insert or replace items; within one call the last occurrence of an id wins."""
        vectors = self._check(vectors, len(ids), "vectors")
        if tags is not None and len(tags) != len(ids):
            raise ValueError(f"{len(tags)} tags for {len(ids)} ids")
        start = len(self._ids)
        for i, item_id in enumerate(ids):
            row = self._rows.get(item_id)
            if row is None:
                row = len(self._ids)
                self._grow(row + 1)
                self._ids.append(item_id)
                self._rows[item_id] = row
            elif row < self._synced:
                self._dirty = True  # an indexed row changed: FAISS must be rebuilt
            self._vecs[row] = vectors[i]
            if tags is not None:
                self._tags[item_id] = tags[i]
            else:
                self._tags.pop(item_id, None)
        if not self._dirty and start == self._synced and len(self._ids) > start:
            self._add_backend(self._vecs[start : len(self._ids)])
            self._synced = len(self._ids)

    def remove_many(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for item_id in ids:
            row = self._rows.pop(item_id, None)
            if row is None:
                continue
            self._tags.pop(item_id, None)
            last = len(self._ids) - 1
            if row != last:
                # Keep rows dense: the last row moves into the hole.
                moved = self._ids[last]
                self._vecs[row] = self._vecs[last]
                self._ids[row] = moved
                self._rows[moved] = row
            self._ids.pop()
            removed += 1
        if removed:
            self._dirty = True
        return removed

    def get_many(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``ids``: ((n, dim) float32 with zero rows for unknown ids, (n,) found)."""
        rows = np.fromiter((self._rows.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        found = rows >= 0
        out = np.zeros((len(ids), self._dim), dtype=np.float32)
        out[found] = self._vecs[rows[found]]
        return out, found

    def search_many(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-k ``(item_id, score)`` per query, best first, excluded ids never returned."""
        queries = self._check(queries, None, "queries")
        b = queries.shape[0]
        if exclude is not None and len(exclude) != b:
            raise ValueError(f"{len(exclude)} exclusion sets for {b} queries")
        n = len(self._ids)
        if b == 0:
            return []
        if n == 0 or k <= 0:
            return [[] for _ in range(b)]
        self._sync()
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        scores, rows = self._search_backend(queries, min(k + extra, n))
        out: list[list[tuple[str, float]]] = []
        for q in range(b):
            skip = exclude[q] if exclude else ()
            hits: list[tuple[str, float]] = []
            for score, row in zip(scores[q], rows[q], strict=True):
                if row < 0:
                    continue
                item_id = self._ids[row]
                if item_id in skip:
                    continue
                hits.append((item_id, float(score)))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def snapshot(self, path: Path) -> None:
        """Write ``vectors.npy`` + ``meta.json`` to ``path`` atomically (temp dir, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            np.save(tmp / "vectors.npy", self._vecs[: len(self._ids)], allow_pickle=False)
            meta = {
                "format": SNAPSHOT_FORMAT,
                "kind": self.kind,
                "dim": self._dim,
                "ids": self._ids,
                "tags": [self._tags.get(i) for i in self._ids],
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
            old = path.with_name(f".{path.name}.old")
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SnapshotError(f"cannot write snapshot {path}: {exc}") from exc

    @classmethod
    def restore(cls, path: Path, settings: IndexSettings | None = None) -> CandidateIndex:
        """Rebuild an index of this class from a snapshot folder."""
        meta, vectors = read_snapshot(Path(path))
        index = cls(int(meta["dim"]), settings)
        tags = meta["tags"]
        index.upsert_many(meta["ids"], vectors, None)
        index._tags = {i: t for i, t in zip(meta["ids"], tags, strict=True) if t is not None}
        return index

    # -- helpers -----------------------------------------------------------------------------

    def _check(self, array: np.ndarray, rows: int | None, what: str) -> np.ndarray:
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self._dim:
            raise DimensionMismatch(f"{what} must be (n, {self._dim}), got {array.shape}")
        if rows is not None and array.shape[0] != rows:
            raise ValueError(f"{array.shape[0]} {what} for {rows} ids")
        if not np.isfinite(array).all():
            raise ValueError(f"{what} hold NaN or infinite values")
        return array

    def _grow(self, rows: int) -> None:
        if rows > self._vecs.shape[0]:
            bigger = np.zeros((max(rows, 2 * self._vecs.shape[0]), self._dim), dtype=np.float32)
            bigger[: len(self._ids)] = self._vecs[: len(self._ids)]
            self._vecs = bigger

    def _sync(self) -> None:
        n = len(self._ids)
        if self._dirty:
            self._reset_backend()
            self._synced = 0
            self._dirty = False
        if self._synced < n:
            self._add_backend(self._vecs[self._synced : n])
            self._synced = n


def read_snapshot(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Load and validate a snapshot folder: (meta, (n, dim) float32 vectors)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        vectors = np.load(path / "vectors.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path} is not a {SNAPSHOT_FORMAT} snapshot")
    ids, tags, dim = meta.get("ids"), meta.get("tags"), meta.get("dim")
    if not isinstance(ids, list) or not isinstance(tags, list) or len(ids) != len(tags):
        raise SnapshotError(f"{path}: ids/tags missing or of different lengths")
    if len(set(ids)) != len(ids):
        raise SnapshotError(f"{path}: duplicate ids")
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape != (len(ids), dim):
        raise SnapshotError(f"{path}: vectors {vectors.shape} do not match {len(ids)} ids x {dim}")
    return meta, vectors
