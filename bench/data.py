"""Generated benchmark data: a catalog of any size with realistic titles and descriptions, users
with interests, and a stream of interactions that mostly follows those interests.

Texts come from the word lists of :mod:`promptrec.demo.sample_data` (about 60-110 characters
of description plus a title, tags, brand/price attributes), so the prompt-wrapped item text has
the length of a real product listing and the encoder cost per item is realistic. Everything is
seeded: the producer process and the benchmark driver regenerate the same records independently.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from promptrec.demo.sample_data import _CATEGORIES, _fill

__all__ = ["BenchData", "interaction_bytes", "item_id", "user_id"]

_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_COUNTRIES = ("US", "DE", "FR", "GB", "ES", "IT", "NL", "SE", "PL", "CA", "JP", "BR", "IN", "AU")
_EXTRAS = (
    "Ships in recyclable packaging.",
    "Rated highly by customers for its value.",
    "A popular gift for birthdays and holidays.",
    "Comes with a two-year warranty.",
    "Part of our bestselling collection this season.",
    "",
)
_TYPES = ("view", "view", "view", "click", "click", "purchase")


def item_id(n: int) -> str:
    """Id of the ``n``-th generated item."""
    return f"bi-{n:07d}"


def user_id(n: int) -> str:
    """Id of the ``n``-th generated user."""
    return f"bu-{n:07d}"


@dataclass
class BenchData:
    """Deterministic generator of ``n_items`` items and ``n_users`` users (seeded)."""

    n_items: int
    n_users: int
    seed: int = 11

    def __post_init__(self) -> None:
        self._cats = list(_CATEGORIES)
        # Item numbers per category: item n belongs to category n % len(categories).
        self._by_cat = [
            list(range(c, self.n_items, len(self._cats))) for c in range(len(self._cats))
        ]

    def items(self) -> Iterator[dict[str, Any]]:
        """Every item record (the value of the ``items`` topic)."""
        rng = random.Random(self.seed)
        for n in range(self.n_items):
            yield self._item(n, rng)

    def item(self, n: int) -> dict[str, Any]:
        """The ``n``-th item alone (same record :meth:`items` yields)."""
        rng = random.Random(self.seed)
        record: dict[str, Any] = {}
        for i in range(n + 1):  # the shared RNG stream must be replayed up to n
            record = self._item(i, rng)
        return record

    def _item(self, n: int, rng: random.Random) -> dict[str, Any]:
        category = self._cats[n % len(self._cats)]
        pools, kinds = _CATEGORIES[category]
        kind = kinds[(n // len(self._cats)) % len(kinds)]
        title = _fill(rng.choice(kind.titles), pools, rng)
        tone = rng.choice(pools["tone"])
        article = "An" if tone[0] in "aeiou" else "A"
        ending = _fill(rng.choice(kind.endings), pools, rng)
        tags = [kind.tag, *rng.sample(kind.tags, 2)]
        extra = rng.choice(_EXTRAS)
        text = f"{article} {tone} {kind.noun} {ending}. Great for {tags[1]} and {tags[2]}. {extra}"
        attributes: dict[str, Any] = {
            "category": category,
            "tags": tags,
            "price": round(rng.uniform(*kind.price), 2),
        }
        if "brand" in pools:
            attributes["brand"] = rng.choice(pools["brand"])
        return {
            "item_id": item_id(n),
            "title": title,
            "text": text.strip(),
            "attributes": attributes,
        }

    def users(self) -> Iterator[dict[str, Any]]:
        """Every user profile record (the value of the ``users`` topic)."""
        for n in range(self.n_users):
            rng = random.Random(self.seed * 1_000_003 + n)
            yield {
                "user_id": user_id(n),
                "attributes": {
                    "age_band": rng.choice(_AGE_BANDS),
                    "country": rng.choice(_COUNTRIES),
                    "interests": self._interests(n),
                },
            }

    def _interests(self, n: int) -> list[str]:
        rng = random.Random(self.seed * 7_919 + n)
        return rng.sample(self._cats, rng.choice((2, 2, 3)))

    def interactions(self, count: int) -> Iterator[tuple[str, str, str]]:
        """``count`` ``(user_id, item_id, type)`` triples; the first ``n_users`` cover every user.

        80 % of interactions hit one of the user's interest categories, the rest any item.
        """
        rng = random.Random(self.seed + 1)
        order = list(range(self.n_users))
        rng.shuffle(order)
        cat_index = {c: i for i, c in enumerate(self._cats)}
        for k in range(count):
            u = order[k] if k < len(order) else rng.randrange(self.n_users)
            if rng.random() < 0.8:
                pool = self._by_cat[cat_index[rng.choice(self._interests(u))]]
                n = rng.choice(pool) if pool else rng.randrange(self.n_items)
            else:
                n = rng.randrange(self.n_items)
            yield user_id(u), item_id(n), rng.choice(_TYPES)


def interaction_bytes(event_id: str, user: str, item: str, kind: str, ts: int) -> bytes:
    """The JSON value of one interaction event (compact separators, like real producers)."""
    event = {"event_id": event_id, "user_id": user, "item_id": item, "type": kind, "ts": ts}
    return json.dumps(event, separators=(",", ":")).encode()
