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

Attribute filters (:class:`~promptrec.index.filters.AttributeFilter`) are answered inside the
FAISS search, never by fetching more and dropping: the per-value bitmaps of storage rows
(:class:`~promptrec.index.filters.AttributeBitmaps`, kept in step on upsert and remove) give the
allowed rows: an exact scan gathers just those rows; an HNSW search gets them as an
``IDSelectorBitmap`` over its labels.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from promptrec.index.exceptions import DimensionMismatch
from promptrec.index.filters import AttributeBitmaps, AttributeFilter
from promptrec.index.kernels import scan_gathered
from promptrec.index.ranking import cut_hits
from promptrec.index.settings import IndexSettings
from promptrec.index.snapshot import SNAPSHOT_FORMAT, read_snapshot, write_snapshot

__all__ = ["SNAPSHOT_FORMAT", "CandidateIndex", "read_snapshot"]

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
        self._attrs = AttributeBitmaps(self.settings.filter_key_set)

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
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        tags: Sequence[str] | None = None,
        attributes: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        """Insert or replace items; within one call the last occurrence of an id wins.

        ``attributes`` (the catalog's, one mapping per id) feed attribute filters; None keeps a
        replaced item's attributes (a new item has none).
        """
        vectors = self._check(vectors, len(ids), "vectors")
        if tags is not None and len(tags) != len(ids):
            raise ValueError(f"{len(tags)} tags for {len(ids)} ids")
        if attributes is not None and len(attributes) != len(ids):
            raise ValueError(f"{len(attributes)} attribute mappings for {len(ids)} ids")
        new = sum(1 for i in set(ids) if i not in self._rows)
        self._grow(len(self._ids) + new)  # once per call, not per item
        changed: dict[int, None] = {}  # rows whose vector changed, in order, once each
        for i, item_id in enumerate(ids):
            row = self._rows.get(item_id)
            if row is None:
                row = len(self._ids)
                self._ids.append(item_id)
                self._rows[item_id] = row
                self._attrs.append_row()
            if attributes is not None:
                self._attrs.set_row(row, attributes[i])
            self._vecs[row] = vectors[i]
            changed[row] = None
            if tags is not None:
                self._tags[item_id] = tags[i]
            else:
                self._tags.pop(item_id, None)
        if changed and not self.searches_storage:
            self._append_labels(np.fromiter(changed, dtype=np.int64, count=len(changed)))

    def set_attributes_many(
        self, ids: Sequence[str], attributes: Sequence[Mapping[str, object]]
    ) -> int:
        """Replace the attributes of known items (vectors untouched); returns how many were known.

        Cheap when nothing changed (one set comparison per item), so it can run for every
        catalog record, including those whose text (and so vector) did not change.
        """
        if len(attributes) != len(ids):
            raise ValueError(f"{len(attributes)} attribute mappings for {len(ids)} ids")
        known = 0
        for item_id, attrs in zip(ids, attributes, strict=True):
            row = self._rows.get(item_id)
            if row is not None:
                self._attrs.set_row(row, attrs)
                known += 1
        return known

    def attributes_of(self, item_id: str) -> dict[str, list[Any]]:
        """The filterable attributes of an item, ``key -> sorted values`` ({} when unknown)."""
        row = self._rows.get(item_id)
        if row is None:
            return {}
        out: dict[str, list[Any]] = {}
        for key, (_kind, value) in self._attrs.pairs_at(row):
            out.setdefault(key, []).append(value)
        return {key: sorted(values, key=repr) for key, values in sorted(out.items())}

    def matches(self, item_id: str, condition: AttributeFilter | None) -> bool:
        """Whether the index holds the item and it passes the filter (None: any known item)."""
        row = self._rows.get(item_id)
        if row is None:
            return False
        return condition is None or condition.matches(item_id, self._attrs.pairs_at(row))

    def remove_many(self, ids: Sequence[str]) -> int:
        """Remove items; unknown ids are ignored. Returns how many were removed."""
        removed = 0
        for item_id in ids:
            row = self._rows.pop(item_id, None)
            if row is None:
                continue
            self._tags.pop(item_id, None)
            self._kill(int(self._row_label[row]))
            self._attrs.remove_row(row)  # moves the last row's postings into the hole too
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
        # map() keeps the per-id loop in C (no generator frame per id): ~20 % faster.
        return np.fromiter(map(self._rows.get, ids, repeat(-1)), dtype=np.int64)

    @property
    def storage(self) -> np.ndarray:
        """``(len, dim)`` float32 C-contiguous view of every row (no copy; do not write).

        Valid until the next :meth:`upsert_many` or :meth:`remove_many`.
        """
        return self._vecs[: len(self._ids)]

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
        filters: Sequence[AttributeFilter | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query as arrays, best first, excluded ids never returned.

        ``filters[i]`` (None: no filter) restricts query ``i`` to the items that pass it; the
        search itself skips the others, so a filter that leaves fewer than k items returns fewer
        hits. Queries with equal filters share one FAISS call.

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
        if filters is not None and len(filters) != b:
            raise ValueError(f"{len(filters)} filters for {b} queries")
        n = len(self._ids)
        width = max(0, min(k, n))
        if b == 0 or width == 0:
            return np.full((b, width), -np.inf, np.float32), np.full((b, width), -1, np.int64)
        self._sync()
        # (b, m) storage rows to exclude, padded with -2 (matches no row, not even a missing hit).
        lens = np.fromiter((len(e) for e in exclude), np.int64, b) if exclude else np.zeros(b, int)
        m = int(lens.max())
        excluded = np.full((b, m), -2, dtype=np.int64)
        if m:
            excluded[np.arange(m)[None, :] < lens[:, None]] = self.rows_of(
                chain.from_iterable(exclude or ())
            )
        # A few spare hits, so that equal scores at the cut are decided by id below, not by
        # where FAISS happened to store the vectors (the same after a snapshot round trip).
        kk = min(k + m + _TIE_MARGIN, n)
        if filters is None or all(f is None for f in filters):
            scores, rows = self._search_all(queries, kk)
        else:
            scores = np.full((b, kk), -np.inf, dtype=np.float32)
            rows = np.full((b, kk), -1, dtype=np.int64)
            groups: dict[AttributeFilter | None, list[int]] = {}
            for i, f in enumerate(filters):
                groups.setdefault(f, []).append(i)
            for f, members in groups.items():
                if f is None:
                    s, r = self._search_all(queries[members], kk)
                else:
                    s, r = self._search_filtered(queries[members], kk, f)
                scores[members, : s.shape[1]] = s
                rows[members, : r.shape[1]] = r
        return cut_hits(self._ids, scores, rows, excluded, width)

    def _search_all(self, queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered backend search: (scores, storage rows), rows -1 where missing."""
        live = self._live if self._dead else None
        scores, labels = self._search_backend(queries, kk, live)
        return scores, self._rows_of_labels(labels)

    def _rows_of_labels(self, labels: np.ndarray) -> np.ndarray:
        if self.searches_storage:
            return labels  # storage rows already, -1 where missing
        return np.where(labels >= 0, self._label_row[np.maximum(labels, 0)], -1)

    def _search_filtered(
        self, queries: np.ndarray, kk: int, condition: AttributeFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search restricted to the rows that pass ``condition``, by an IDSelector bitmap."""
        n = len(self._ids)
        allowed = self._attrs.allowed(condition, n)  # (n,) bool over storage rows
        if condition.exclude_ids:
            out = self.rows_of(condition.exclude_ids)
            allowed[out[out >= 0]] = False
        count = int(allowed.sum())
        b = queries.shape[0]
        if count == 0:
            return np.full((b, 0), -np.inf, np.float32), np.full((b, 0), -1, np.int64)
        kk = min(kk, count)
        exact = (
            self.searches_storage
            or not self.filters_labels
            or count <= self.settings.filter_exact_rows
        )
        if exact:
            return self._scan_allowed(queries, kk, allowed)
        label_rows = self._label_row[: self._ntotal]  # dead labels map to -1
        label_ok = (label_rows >= 0) & allowed[np.maximum(label_rows, 0)]
        label_bits = np.packbits(label_ok, bitorder="little")
        scores, labels = self._search_backend(queries, kk, label_bits)
        rows = self._rows_of_labels(labels)
        short = np.flatnonzero((rows >= 0).sum(axis=1) < kk)
        if short.size:
            # A graph search can run out of allowed nodes before k (very selective filters):
            # those queries get the exact answer instead of a short one.
            scores[short], rows[short] = self._scan_allowed(queries[short], kk, allowed)
        return scores, rows

    def _scan_allowed(
        self, queries: np.ndarray, kk: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-kk over the allowed storage rows only (gathered, one BLAS scan)."""
        return scan_gathered(queries, self._vecs[: len(self._ids)], kk, allowed)

    def search_many(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
        filters: Sequence[AttributeFilter | None] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-k ``(item_id, score)`` per query, best first, excluded ids never returned."""
        scores, rows = self.search_rows(queries, k, exclude, filters)  # k <= 0: (b, 0) arrays
        ids = self._ids
        return [
            [(ids[r], s) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores.tolist(), rows.tolist(), strict=True)
        ]

    def snapshot(self, path: Path) -> None:
        """Write ``vectors.npy`` + ``meta.json`` to ``path`` atomically (temp dir, then rename)."""
        n = len(self._ids)
        labels = self._row_label[:n]
        # Rows in FAISS label order: a restored index (labels 0..n-1 in file order) then breaks
        # score ties exactly like this one.
        order = np.argsort(labels, kind="stable") if n and labels.min() >= 0 else np.arange(n)
        ids = [self._ids[r] for r in order.tolist()]
        write_snapshot(
            Path(path),
            self.kind,
            self._vecs[order].reshape(n, self._dim),
            ids,
            [self._tags.get(i) for i in ids],
            [self.attributes_of(i) for i in ids],
        )

    @classmethod
    def restore(cls, path: Path, settings: IndexSettings | None = None) -> CandidateIndex:
        """Rebuild an index of this class from a snapshot folder."""
        meta, vectors = read_snapshot(Path(path))
        index = cls(int(meta["dim"]), settings)
        tags = meta["tags"]
        index.upsert_many(meta["ids"], vectors, None, meta.get("attributes"))
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
            self._attrs.grow(size)

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
