"""Recent popularity: the fallback for users with no usable signal yet."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

__all__ = ["RecentPopularity"]


class RecentPopularity:
    """Exponentially decayed interaction counts per item.

    Each new interaction adds ``1`` while all earlier counts decay by ``2 ** (-1 / half_life)``;
    the decay is applied lazily through a growing weight, renormalised before it overflows.
    """

    def __init__(self, half_life: int = 5000, max_items: int = 100_000) -> None:
        self._growth = 2.0 ** (1.0 / half_life)
        self._weight = 1.0
        self._counts: dict[str, float] = {}
        self._max_items = max_items
        self._ranked: list[tuple[str, float]] | None = None
        self.clicks = 0  # interactions counted since start (each accepted click exactly once)

    def add_many(self, item_ids: Iterable[str]) -> None:
        """Count interactions, in event order."""
        for item_id in item_ids:
            self.clicks += 1
            self._weight *= self._growth
            self._counts[item_id] = self._counts.get(item_id, 0.0) + self._weight
        if self._weight > 1e100:
            self._counts = {k: v / self._weight for k, v in self._counts.items()}
            self._weight = 1.0
        if len(self._counts) > self._max_items:
            # Bounded memory: keep the most popular half.
            keep = sorted(self._counts.items(), key=lambda kv: kv[1], reverse=True)
            self._counts = dict(keep[: self._max_items // 2])
        self._ranked = None

    def top(
        self, k: int, exclude: Collection[str], known: Callable[[str], bool]
    ) -> list[tuple[str, float]]:
        """The ``k`` most popular known items not in ``exclude``, with scores in (0, 1]."""
        if self._ranked is None:
            # Sorted once per batch of updates, not per query.
            ranked = sorted(self._counts.items(), key=lambda kv: kv[1], reverse=True)
            top = ranked[0][1] if ranked else 1.0
            self._ranked = [(item, count / top) for item, count in ranked]
        out: list[tuple[str, float]] = []
        for item, score in self._ranked:
            if item not in exclude and known(item):
                out.append((item, score))
                if len(out) == k:
                    break
        return out

    def __len__(self) -> int:
        return len(self._counts)
