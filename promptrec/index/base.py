"""The candidate-index interface and the storage every FAISS adapter shares.

Items are string ids; vectors are float32 rows, normally L2-normalised, scored by inner product.
The authoritative copy of the data is numpy (a capacity-doubling matrix, row <-> id maps and a
version tag per item). The FAISS structure of an adapter holds one *label* per vector it was
given; ``_row_label``/``_label_row`` map between rows and labels. New and replaced vectors are
appended to FAISS at once (new items are searchable immediately). A replaced or removed row
leaves its old label behind as a tombstone, filtered out of searches by a FAISS ``IDSelector``
bitmap, so a catalog update costs one FAISS add instead of a rebuild (an HNSW rebuild takes
seconds at 20k items and minutes at 1M). FAISS is rebuilt from the rows only when tombstones
outnumber live labels, or, for adapters whose search cannot filter (GPU), on the next search.
"""

from __future__ import annotations

import abc
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from promptrec.index.exceptions import DimensionMismatch, SnapshotError
from promptrec.index.settings import IndexSettings

__all__ = ["SNAPSHOT_FORMAT", "CandidateIndex"]

SNAPSHOT_FORMAT = "promptrec-index-v1"
_TIE_MARGIN = 8  # extra FAISS hits fetched per query to settle ties at the top-k cut


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
        self._row_label = np.full(16, -1, dtype=np.int64)  # (capacity,) FAISS label of a row
        self._label_row = np.full(16, -1, dtype=np.int64)  # (labels,) row of a label; -1 dead
        self._live = np.zeros(2, dtype=np.uint8)  # bitmap of live labels (IDSelectorBitmap)
        self._ntotal = 0  # labels handed to FAISS
        self._dead = 0  # tombstoned labels among them
        self._dirty = False  # FAISS must be rebuilt from the rows before the next search

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
    def _search_backend(
        self, queries: np.ndarray, k: int, live: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search: (scores (b, k) float32, labels (b, k) int64, -1 where missing).

        ``live`` is the bitmap of live labels when there are tombstones (None otherwise); only
        adapters with :attr:`filters_labels` get one.
        """

    @property
    def filters_labels(self) -> bool:
        """Whether searches can skip tombstoned labels (else replacements trigger a rebuild)."""
        return True

    @property
    def searches_storage(self) -> bool:
        """Whether :meth:`_search_backend` scans the numpy rows itself (labels are rows).

        Such an adapter keeps no FAISS copy of the vectors, so no labels or tombstones either:
        upserts and removals change the rows in place.
        """
        return False

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
        new = sum(1 for i in set(ids) if i not in self._rows)
        self._grow(len(self._ids) + new)  # once per call, not per item
        changed: dict[int, None] = {}  # rows whose vector changed, in order, once each
        for i, item_id in enumerate(ids):
            row = self._rows.get(item_id)
            if row is None:
                row = len(self._ids)
                self._ids.append(item_id)
                self._rows[item_id] = row
            self._vecs[row] = vectors[i]
            changed[row] = None
            if tags is not None:
                self._tags[item_id] = tags[i]
            else:
                self._tags.pop(item_id, None)
        if changed and not self.searches_storage:
            self._append_labels(np.fromiter(changed, dtype=np.int64, count=len(changed)))

    def remove_many(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for item_id in ids:
            row = self._rows.pop(item_id, None)
            if row is None:
                continue
            self._tags.pop(item_id, None)
            self._kill(int(self._row_label[row]))
            last = len(self._ids) - 1
            if row != last:
                # Keep rows dense: the last row (and its FAISS label) moves into the hole.
                moved = self._ids[last]
                self._vecs[row] = self._vecs[last]
                self._ids[row] = moved
                self._rows[moved] = row
                label = int(self._row_label[last])
                self._row_label[row] = label
                if label >= 0:
                    self._label_row[label] = row
            self._row_label[last] = -1
            self._ids.pop()
            removed += 1
        return removed

    def get_many(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``ids``: ((n, dim) float32 with zero rows for unknown ids, (n,) found)."""
        rows = np.fromiter((self._rows.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        found = rows >= 0
        out = np.zeros((len(ids), self._dim), dtype=np.float32)
        out[found] = self._vecs[rows[found]]
        return out, found

    def rows_of(self, ids: Iterable[str]) -> np.ndarray:
        """``(n,)`` int64 storage rows of ``ids``, -1 for unknown ids.

        Rows are valid until the next :meth:`upsert_many` or :meth:`remove_many`.
        """
        get = self._rows.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64)

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """Vectors of storage rows: shape ``S`` -> ``S + (dim,)`` float32 (row -1: any row)."""
        return self._vecs[np.maximum(rows, 0)]

    def ids_at(self, rows: Iterable[int]) -> list[str]:
        """Item ids of storage rows (all must be valid)."""
        ids = self._ids
        return [ids[r] for r in rows]

    def search_rows(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query as arrays, best first, excluded ids never returned.

        Ties at equal score are ordered by item id, so every replica of a catalog returns the
        same items whatever order it indexed them in.

        Returns:
            ``(scores, rows)``: (b, min(k, len)) float32 and int64 storage rows; rows of missing
            hits are -1 with score -inf.
        """
        queries = self._check(queries, None, "queries")
        b = queries.shape[0]
        if exclude is not None and len(exclude) != b:
            raise ValueError(f"{len(exclude)} exclusion sets for {b} queries")
        n = len(self._ids)
        width = max(0, min(k, n))
        if b == 0 or width == 0:
            return np.full((b, width), -np.inf, np.float32), np.full((b, width), -1, np.int64)
        self._sync()
        # (b, m) storage rows to exclude, padded with -2 (matches no row, not even a missing hit).
        lens = np.fromiter((len(e) for e in exclude), np.int64, b) if exclude else np.zeros(b, int)
        m = int(lens.max())
        if m:
            excluded = np.full((b, m), -2, dtype=np.int64)
            excluded[np.arange(m)[None, :] < lens[:, None]] = self.rows_of(
                item for ex in exclude or () for item in ex
            )
        live = self._live if self._dead else None
        # A few spare hits, so that equal scores at the cut are decided by id below, not by
        # where FAISS happened to store the vectors (the same after a snapshot round trip).
        scores, labels = self._search_backend(queries, min(k + m + _TIE_MARGIN, n), live)
        if self.searches_storage:
            rows = labels  # (b, kk) storage rows, -1 where missing
        else:
            rows = np.where(labels >= 0, self._label_row[np.maximum(labels, 0)], -1)
        valid = rows >= 0
        if m:
            valid &= ~(rows[:, :, None] == excluded[:, None, :]).any(axis=2)
        # Valid hits first, in FAISS order (a stable sort of the invalid flags), then the cut.
        order = np.argsort(~valid, axis=1, kind="stable")[:, :width]
        keep = np.take_along_axis(valid, order, axis=1)
        out_rows = np.where(keep, np.take_along_axis(rows, order, axis=1), -1)
        out_scores = np.where(keep, np.take_along_axis(scores, order, axis=1), -np.inf)
        tied = ((np.diff(scores, axis=1) == 0) & (labels[:, 1:] >= 0)).any(axis=1)
        ids = self._ids
        for q in np.flatnonzero(tied).tolist():
            # Rare: collect every valid hit, order by (score desc, id), then cut.
            hits = sorted(
                zip(scores[q][valid[q]].tolist(), rows[q][valid[q]].tolist(), strict=True),
                key=lambda h: (-h[0], ids[h[1]]),
            )[:width]
            out_rows[q] = -1
            out_scores[q] = -np.inf
            if hits:
                out_scores[q, : len(hits)], out_rows[q, : len(hits)] = zip(*hits, strict=True)
        return out_scores.astype(np.float32, copy=False), out_rows

    def search_many(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-k ``(item_id, score)`` per query, best first, excluded ids never returned."""
        scores, rows = self.search_rows(queries, k, exclude)  # k <= 0: (b, 0) arrays
        ids = self._ids
        return [
            [(ids[r], s) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores.tolist(), rows.tolist(), strict=True)
        ]

    def snapshot(self, path: Path) -> None:
        """Write ``vectors.npy`` + ``meta.json`` to ``path`` atomically (temp dir, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        n = len(self._ids)
        labels = self._row_label[:n]
        # Rows in FAISS label order: a restored index (labels 0..n-1 in file order) then breaks
        # score ties exactly like this one.
        order = np.argsort(labels, kind="stable") if n and labels.min() >= 0 else np.arange(n)
        ids = [self._ids[r] for r in order.tolist()]
        try:
            np.save(tmp / "vectors.npy", self._vecs[order], allow_pickle=False)
            meta = {
                "format": SNAPSHOT_FORMAT,
                "kind": self.kind,
                "dim": self._dim,
                "ids": ids,
                "tags": [self._tags.get(i) for i in ids],
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
            # 1.5x, not 2x: the slack of a 1M x 384 catalog is then at most 0.75 GB, not 1.5.
            size = max(rows, self._vecs.shape[0] * 3 // 2)
            bigger = np.zeros((size, self._dim), dtype=np.float32)
            bigger[: len(self._ids)] = self._vecs[: len(self._ids)]
            self._vecs = bigger
            row_label = np.full(size, -1, dtype=np.int64)
            row_label[: len(self._ids)] = self._row_label[: len(self._ids)]
            self._row_label = row_label

    def _kill(self, label: int) -> None:
        """Tombstone a FAISS label (or schedule a rebuild when searches cannot filter)."""
        if label < 0:
            return
        self._label_row[label] = -1
        self._live[label >> 3] &= np.uint8(0xFF ^ (1 << (label & 7)))
        self._dead += 1
        if not self.filters_labels:
            self._dirty = True

    def _append_labels(self, rows: np.ndarray) -> None:
        """Give ``rows`` (whose vectors changed) fresh FAISS labels; old labels become dead."""
        for label in self._row_label[rows].tolist():
            self._kill(label)
        if self._dirty:
            self._row_label[rows] = -1  # added by the rebuild on the next search
            return
        start, end = self._ntotal, self._ntotal + len(rows)
        if end > len(self._label_row):
            size = max(end, 2 * len(self._label_row))
            label_row = np.full(size, -1, dtype=np.int64)
            label_row[:start] = self._label_row[:start]
            self._label_row = label_row
            live = np.zeros((size + 7) // 8, dtype=np.uint8)
            live[: len(self._live)] = self._live
            self._live = live
        self._add_backend(self._vecs[rows])  # (len(rows), dim)
        self._label_row[start:end] = rows
        self._row_label[rows] = np.arange(start, end, dtype=np.int64)
        self._set_live(start, end)
        self._ntotal = end

    def _set_live(self, start: int, end: int) -> None:
        """Set bits ``start..end-1`` of the live bitmap (bit ``i & 7`` of byte ``i >> 3``)."""
        live = self._live
        i = start
        while i < end and i & 7:
            live[i >> 3] |= np.uint8(1 << (i & 7))
            i += 1
        full = i + (end - i) // 8 * 8
        live[i >> 3 : full >> 3] = 0xFF
        for j in range(full, end):
            live[j >> 3] |= np.uint8(1 << (j & 7))

    def _sync(self) -> None:
        """Rebuild FAISS from the rows when flagged, or when tombstones outnumber live labels."""
        if not self._dirty and self._dead <= max(1024, self._ntotal // 2):
            return
        n = len(self._ids)
        self._reset_backend()
        self._ntotal = self._dead = 0
        self._live[:] = 0
        self._label_row[:] = -1
        self._row_label[:] = -1
        self._dirty = False
        if n:
            self._append_labels(np.arange(n, dtype=np.int64))


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
