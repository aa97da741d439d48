"""Attribute filters of a search, and the per-value bitmaps of storage rows that answer them.

An :class:`AttributeFilter` keeps an item when, for every condition ``key -> values``, one of the
item's values of ``key`` is in ``values`` (equality, or membership for a list of values; a list
valued attribute such as ``tags`` matches when any element does), and the item id is not in
``exclude_ids``. Values compare by JSON meaning: ``1`` and ``1.0`` are equal, ``"1"``, ``1``
and ``true`` are not.

:class:`AttributeBitmaps` holds one posting per ``(key, value)``: the storage rows of the items
that carry it. A frequent value's posting is a packed bitmap (the byte layout of FAISS's
``IDSelectorBitmap``: bit ``r & 7`` of byte ``r >> 3``); a rare one is a set of rows, so that
high-cardinality attributes (prices, ISBNs) do not cost ``rows / 8`` bytes per value. A filter is
answered by OR-ing the postings of a key's values and AND-ing the keys: ``O(rows / 8)`` byte
operations, never a scan of the items' attributes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AttributeBitmaps", "AttributeFilter", "FilterValue", "Pair", "canonical_value"]

FilterValue = str | int | float | bool
Pair = tuple[str, tuple[str, Any]]  # (attribute key, canonical value)


def canonical_value(value: object) -> tuple[str, Any]:
    """``(kind, value)`` with JSON equality: bools apart from numbers, integral floats as ints.

    Raises:
        ValueError: Not a string, a finite number or a bool.
    """
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"attribute value {value!r} is not finite")
        return ("n", int(value)) if value.is_integer() else ("n", value)
    if isinstance(value, str):
        return ("s", value)
    raise ValueError(f"attribute values must be strings, numbers or bools, got {value!r}")


def attribute_pairs(
    attributes: Mapping[str, object], keys: frozenset[str] | None
) -> frozenset[Pair]:
    """The ``(key, canonical value)`` pairs of an item's attributes (list values: one per element).

    Values that cannot be compared (nested objects, nulls) are skipped: no filter can name them.
    ``keys`` limits the pairs to those attribute keys (None: every key).
    """
    pairs: set[Pair] = set()
    for key, value in attributes.items():
        if keys is not None and key not in keys:
            continue
        for element in value if isinstance(value, list | tuple) else (value,):
            try:
                pairs.add((str(key), canonical_value(element)))
            except ValueError:
                continue
    return frozenset(pairs)


@dataclass(frozen=True)
class AttributeFilter:
    """Conditions on item attributes plus excluded ids; hashable, so equal filters group.

    Build it with :meth:`build` (canonical, sorted), not with the constructor.
    """

    conditions: tuple[tuple[str, frozenset[tuple[str, Any]]], ...] = ()
    exclude_ids: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        conditions: Mapping[str, FilterValue | Sequence[FilterValue]] | None = None,
        exclude_ids: Iterable[str] = (),
    ) -> AttributeFilter:
        """A filter from ``key -> value or list of values`` and ids to leave out.

        Raises:
            ValueError: A value is not a string, finite number or bool, or a key has no values.
        """
        out = []
        for key, values in sorted((conditions or {}).items()):
            many = values if isinstance(values, list | tuple) else (values,)
            if not many:
                raise ValueError(f"filter key {key!r} has no values")
            out.append((str(key), frozenset(canonical_value(v) for v in many)))
        return cls(tuple(out), frozenset(exclude_ids))

    @property
    def keys(self) -> list[str]:
        """The attribute keys the filter tests."""
        return [key for key, _ in self.conditions]

    def matches(self, item_id: str, pairs: frozenset[Pair]) -> bool:
        """Whether an item with these attribute pairs passes the filter."""
        if item_id in self.exclude_ids:
            return False
        return all(any((key, v) in pairs for v in values) for key, values in self.conditions)


class _Posting:
    """The rows of one ``(key, value)``: a set while rare, a packed bitmap once frequent."""

    __slots__ = ("bits", "count", "rows")

    def __init__(self) -> None:
        self.rows: set[int] | None = set()
        self.bits: np.ndarray | None = None  # (capacity / 8,) uint8 when dense
        self.count = 0

    def add(self, row: int) -> None:
        if self.bits is not None:
            self.bits[row >> 3] |= np.uint8(1 << (row & 7))
        else:
            assert self.rows is not None
            self.rows.add(row)
        self.count += 1

    def discard(self, row: int) -> None:
        if self.bits is not None:
            self.bits[row >> 3] &= np.uint8(0xFF ^ (1 << (row & 7)))
        else:
            assert self.rows is not None
            self.rows.discard(row)
        self.count -= 1

    def layout(self, capacity: int) -> None:
        """Dense at ``count >= capacity / 64``, sparse again below half of that."""
        threshold = max(64, capacity // 64)
        if self.bits is None and self.count >= threshold:
            bits = np.zeros((capacity + 7) // 8, dtype=np.uint8)
            mask = np.zeros(capacity, dtype=bool)
            mask[np.fromiter(self.rows or (), dtype=np.int64)] = True
            bits[:] = np.packbits(mask, bitorder="little")
            self.bits, self.rows = bits, None
        elif self.bits is not None and self.count < threshold // 2:
            mask = np.unpackbits(self.bits, bitorder="little").astype(bool)
            self.rows, self.bits = set(np.flatnonzero(mask).tolist()), None
        elif self.bits is not None and len(self.bits) * 8 < capacity:
            bigger = np.zeros((capacity + 7) // 8, dtype=np.uint8)
            bigger[: len(self.bits)] = self.bits
            self.bits = bigger

    def or_into(self, mask: np.ndarray) -> None:
        """Set this posting's rows in the bool mask ``(n,)``."""
        n = len(mask)
        if self.bits is not None:
            mask |= np.unpackbits(self.bits, count=n, bitorder="little").astype(bool)
        elif self.rows:
            mask[np.fromiter(self.rows, dtype=np.int64, count=len(self.rows))] = True


class AttributeBitmaps:
    """Postings ``(key, value) -> rows``, kept in step with an index's storage rows.

    Args:
        keys: Attribute keys to index (None: every key).
    """

    def __init__(self, keys: frozenset[str] | None = None) -> None:
        self.keys = keys
        self._postings: dict[Pair, _Posting] = {}
        self._pairs: list[frozenset[Pair]] = []  # row -> the item's pairs
        self._capacity = 16

    def pairs_at(self, row: int) -> frozenset[Pair]:
        """The attribute pairs of a storage row."""
        return self._pairs[row]

    def grow(self, capacity: int) -> None:
        """Make room for rows up to ``capacity`` (the index's storage capacity)."""
        if capacity > self._capacity:
            self._capacity = capacity
            for posting in self._postings.values():
                posting.layout(capacity)

    def append_row(self) -> None:
        """A new storage row, without attributes yet."""
        self._pairs.append(frozenset())

    def set_row(self, row: int, attributes: Mapping[str, object]) -> None:
        """Replace the attributes of ``row``."""
        self._assign(row, attribute_pairs(attributes, self.keys))

    def _assign(self, row: int, new: frozenset[Pair]) -> None:
        old = self._pairs[row]
        if new == old:
            return
        for pair in old - new:
            posting = self._postings[pair]
            posting.discard(row)
            if posting.count == 0:
                del self._postings[pair]
            else:
                posting.layout(self._capacity)
        for pair in new - old:
            posting = self._postings.setdefault(pair, _Posting())
            posting.add(row)
            posting.layout(self._capacity)
        self._pairs[row] = new

    def remove_row(self, row: int) -> None:
        """Drop ``row``; the last row moves into its place (as the index's storage does)."""
        self._assign(row, frozenset())
        last = len(self._pairs) - 1
        if row != last:
            moved = self._pairs[last]
            self._assign(last, frozenset())
            self._assign(row, moved)
        self._pairs.pop()

    def allowed(self, condition: AttributeFilter, n: int) -> np.ndarray:
        """``(n,)`` bool mask of the rows whose attributes pass the conditions (not the ids)."""
        mask = np.ones(n, dtype=bool)
        for key, values in condition.conditions:
            hit = np.zeros(n, dtype=bool)
            for value in values:
                posting = self._postings.get((key, value))
                if posting is not None:
                    posting.or_into(hit)
            mask &= hit
            if not mask.any():
                break
        return mask

    def nbytes(self) -> int:
        """Approximate memory of the postings (dense bytes + 8 bytes per sparse entry)."""
        total = 0
        for posting in self._postings.values():
            total += posting.bits.nbytes if posting.bits is not None else 8 * posting.count
        return total

    def __len__(self) -> int:
        return len(self._postings)
