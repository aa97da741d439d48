"""A generated text-heavy data set (JSON lines) where an item's text predicts who consumes it.

No second real data set is available offline, so this writes one in the ``jsonl`` format
(:func:`~promptrec.evaluation.datasets.write_jsonl`): 20 themes of six words each; an item
belongs to one theme, its title and description use words of that theme plus common filler
words, and it is released at a random time (users only pick released items, so late items are
cold under a time cut). Each user prefers two themes; each step picks the first theme with
probability 0.7, the second with 0.25, any theme otherwise, and an item of that theme by a
Zipf(1) popularity over the released ones, without repeats. The text thus carries the theme
(what a zero-shot text model can find) and the popularity within a theme is only in the
interactions (what the ID path learns); items are sparse (few interactions each), as in a
long-tail catalog.

Usage: ``python -m promptrec.evaluation.text_synthetic --out DIR [--items 2000 --users 1000]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from promptrec.evaluation.datasets import Dataset, Interaction, ItemRecord, write_jsonl

__all__ = ["THEMES", "main", "text_dataset"]

THEMES = {
    "space": ("planet", "rocket", "galaxy", "orbit", "astronaut", "comet"),
    "cooking": ("recipe", "kitchen", "baking", "spice", "soup", "bread"),
    "jazz": ("saxophone", "trumpet", "swing", "blues", "improvisation", "club"),
    "hiking": ("mountain", "trail", "forest", "summit", "backpack", "canyon"),
    "football": ("goal", "stadium", "striker", "league", "referee", "match"),
    "gardening": ("flower", "seed", "soil", "garden", "tulip", "compost"),
    "finance": ("stock", "market", "invest", "bank", "budget", "dividend"),
    "medicine": ("doctor", "hospital", "vaccine", "surgery", "nurse", "patient"),
    "ocean": ("whale", "coral", "reef", "shark", "tide", "sailor"),
    "history": ("empire", "medieval", "castle", "king", "war", "ancient"),
    "programming": ("code", "software", "python", "compiler", "algorithm", "debug"),
    "painting": ("canvas", "brush", "portrait", "gallery", "watercolor", "artist"),
    "cars": ("engine", "racing", "motor", "wheel", "garage", "speed"),
    "birds": ("eagle", "parrot", "nest", "feather", "owl", "sparrow"),
    "photography": ("camera", "lens", "photo", "exposure", "tripod", "shutter"),
    "chess": ("knight", "bishop", "checkmate", "opening", "pawn", "grandmaster"),
    "fashion": ("dress", "designer", "runway", "fabric", "style", "shoes"),
    "horror": ("ghost", "haunted", "vampire", "zombie", "nightmare", "curse"),
    "poetry": ("poem", "verse", "rhyme", "sonnet", "poet", "stanza"),
    "weather": ("storm", "rain", "thunder", "snow", "cloud", "hurricane"),
}
_FILLER = ("great", "little", "new", "old", "complete", "simple", "secret", "modern", "first")


def text_dataset(
    n_items: int = 2000, n_users: int = 1000, min_len: int = 8, max_len: int = 30, seed: int = 0
) -> Dataset:
    """The data set of the module docstring.

    Raises:
        ValueError: Sizes out of range (``3 <= min_len <= max_len``, enough items per theme).
    """
    themes = list(THEMES)
    if min_len < 3 or max_len < min_len or n_items < len(themes) * max_len:
        raise ValueError(
            f"need 3 <= min_len <= max_len and >= {len(themes) * max_len} items, "
            f"got {min_len}, {max_len}, {n_items}"
        )
    rng = np.random.default_rng(seed)
    theme_of = rng.integers(0, len(themes), size=n_items)
    # Release times in [0, 1): a tenth of the catalog exists from the start.
    release = np.where(rng.random(n_items) < 0.1, 0.0, rng.random(n_items))
    items = []
    for i in range(n_items):
        words = THEMES[themes[theme_of[i]]]
        pick = rng.choice(len(words), size=3, replace=False)
        title = f"The {rng.choice(_FILLER)} {words[pick[0]]} {words[pick[1]]}".title()
        text = f"A {rng.choice(_FILLER)} story about the {words[pick[2]]} and the {words[pick[0]]}."
        items.append(ItemRecord(f"t{i}", f"{title} #{i}", text, {"tags": [words[pick[1]]]}))
    # Zipf(1) popularity rank within each theme, in a random order of its items.
    weight = np.zeros(n_items)
    for t in range(len(themes)):
        members = rng.permutation(np.flatnonzero(theme_of == t))
        weight[members] = 1.0 / np.arange(1, len(members) + 1)
    events = []
    for u in range(n_users):
        first, second = rng.choice(len(themes), size=2, replace=False)
        length = int(rng.integers(min_len, max_len + 1))
        start = float(rng.random()) * 0.6
        times = np.sort(start + (1.0 - start) * rng.random(length))  # in [start, 1)
        seen: set[int] = set()
        for ts in times:
            r = rng.random()
            theme = first if r < 0.7 else second if r < 0.95 else int(rng.integers(len(themes)))
            cand = np.flatnonzero((theme_of == theme) & (release <= ts))
            cand = np.array([c for c in cand if c not in seen], dtype=np.int64)
            if not len(cand):
                continue
            p = weight[cand] / weight[cand].sum()
            item = int(rng.choice(cand, p=p))
            seen.add(item)
            events.append(Interaction(f"u{u}", f"t{item}", int(ts * 1e9)))
    events.sort(key=lambda e: e.ts)
    return Dataset("text-synthetic", "jsonl", items, {}, events)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: writes the data set as JSON lines into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        dataset = text_dataset(args.items, args.users, seed=args.seed)
    except ValueError as exc:
        print(f"text_synthetic: error: {exc}", file=sys.stderr)
        return 2
    write_jsonl(dataset, args.out)
    print(f"wrote {args.out}: {len(dataset.items)} items, {len(dataset.interactions)} interactions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
