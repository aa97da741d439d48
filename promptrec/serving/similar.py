"""Similar items: the k nearest catalog items to a given item (item-to-item, no user needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.index import AttributeFilter, CandidateIndex

__all__ = ["similar_many"]


def similar_many(
    index: CandidateIndex,
    item_ids: Sequence[str],
    ks: Sequence[int],
    filters: Sequence[AttributeFilter | None] | None = None,
    excludes: Sequence[frozenset[str]] | None = None,
) -> tuple[list[list[tuple[str, float]]], dict[int, InvalidEvent]]:
    """Nearest items by inner product of index vectors, the item itself excluded; one search.

    Deleted items are not in the index, so they never appear. ``filters``/``excludes`` (aligned
    with ``item_ids``) restrict the answer further.

    Returns:
        ``(results, rejected)``: per query ``(item_id, score)`` best first (empty when rejected),
        and query position -> ``InvalidEvent(unknown_item)`` for items the index does not hold.
    """
    n = len(item_ids)
    results: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    vectors, found = index.get_many(item_ids)  # (n, dim) float32, (n,) bool
    rejected = {
        i: InvalidEvent(ReasonCode.unknown_item, f"item {item_ids[i]!r} not in the catalog")
        for i in np.flatnonzero(~found).tolist()
    }
    rows = np.flatnonzero(found).tolist()
    if not rows:
        return results, rejected
    exclude = [frozenset({item_ids[i]}) | (excludes[i] if excludes else frozenset()) for i in rows]
    hits = index.search_many(
        vectors[rows],
        max(ks[i] for i in rows),
        exclude=exclude,
        filters=[filters[i] for i in rows] if filters else None,
    )
    for i, row_hits in zip(rows, hits, strict=True):
        results[i] = row_hits[: ks[i]]
    return results, rejected
