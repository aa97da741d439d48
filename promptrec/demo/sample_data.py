"""Deterministic sample catalog, users and interactions (seeded, no network).

Items are composed from per-category word lists. Each user has 2-3 interest categories and a
hidden taste for 1-2 kinds in each (e.g. mystery among books) and mostly interacts with those,
so a text-based recommender can predict well. Regenerate the bundled files with
``python -m promptrec.demo.sample_data --out promptrec/demo/data``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["START_TS", "SampleData", "generate", "load", "load_bundled", "main", "write"]

START_TS = 1767225600000  # 2026-01-01T00:00:00Z, epoch ms
N_ITEMS_PER_CATEGORY = 30
N_USERS = 60
N_INTERACTIONS = 3000
_FILES = ("items", "users", "interactions")

# "== category", then word pools "name = a, b, ..." (titles and descriptions use {name}), then one
# block per kind: "* tag | noun | price range | title / title", an indented "tags: a, b, c" line
# and indented description endings, one per line. Descriptions read "A <tone> <noun> <ending>."
_CATALOG = """
== books
adj = Silent, Hollow, Crimson, Forgotten, Midnight, Broken, Hidden, Winter
place = Harbor, Lighthouse, Orchard, Archive, Manor, Station, Quarry, Marsh
realm = Embers, Ashfall, Stormholt, Saltmere, the Northern Reach
planet = Kepler, Meridian, Titan, Vesper, Halcyon
tone = gripping, atmospheric, thoughtful, sweeping, witty
* mystery | mystery novel | 9-22 | The {adj} {place} / Murder at the {place}
  tags: detective, crime, whodunit
  about a retired detective who reopens a cold case
  about a librarian tracing a stolen manuscript
* fantasy | fantasy novel | 10-28 | The {adj} Crown / Song of {realm} / Heir of {realm}
  tags: magic, epic, dragons
  about an exiled princess and a dragon pact
  about a thief who steals a god's name
* science fiction | science-fiction novel | 9-25 | Beyond {planet} / The {planet} Protocol
  tags: space, future, aliens
  about a generation ship that wakes too early
  about first contact on a frozen moon
* history | narrative history | 14-35 | The {adj} Empire / Ships of the {adj} Sea
  tags: nonfiction, europe, biography
  of medieval trade routes across the Baltic
  of the engineers who built the great canals
* romance | romance novel | 8-18 | Letters from the {place} / A {adj} Summer
  tags: love, small town, feel-good
  about two rival bakers in a seaside town
  about a pianist who returns home for one last summer
== movies
adj = Last, Burning, Quiet, Electric, Lost, Golden, Iron, Paper
noun = Signal, Frontier, Verdict, Horizon, Tide, Witness, Garden, Circuit
tone = tense, heartwarming, stylish, moving, clever
* thriller | thriller film | 4-15 | The {adj} {noun} / {noun} Zero
  tags: suspense, crime, action
  about a hacker framed for a citywide blackout
  about a witness hiding in plain sight
* comedy | comedy film | 4-12 | {adj} Weekend / My {adj} Neighbors
  tags: funny, family, romcom
  about a wedding planner who loses the rings
  about two roommates running a food truck
* documentary | documentary | 4-14 | The {adj} Ocean / Voices of the {adj} Reef
  tags: nature, history, science
  about coral reefs and the divers who protect them
  about the history of late-night jazz clubs
* animation | animated film | 5-15 | Little {noun} / The {adj} Lantern
  tags: kids, family, adventure
  about a small robot who learns to paint
  about a fox searching for a fallen star
* drama | drama film | 4-15 | {adj} Verdict / A {adj} Season
  tags: award-winning, emotional, true story
  about a family farm facing a long drought
  about a young teacher in a mountain village
== music
adj = Blue, Neon, Velvet, Distant, Golden, Northern, Slow, Wild
noun = Hours, Tides, Lights, Rivers, Echoes, Skylines, Roads, Fires
artist = The Paper Lanterns, Mara Quinn Trio, Static Pines, Lowland Choir, Juno Vale
tone = warm, hypnotic, raw, lush, upbeat
* jazz | jazz album | 9-20 | {adj} {noun} / Live at the {adj} Room
  tags: saxophone, swing, live
  by {artist} with brushed drums and late-night saxophone
* rock | rock album | 9-20 | {adj} {noun} / {noun} on Fire
  tags: guitar, indie, alternative
  by {artist}, full of loud guitars and big choruses
* classical | classical recording | 10-25 | Nocturnes for {adj} {noun} / {adj} Sonatas
  tags: piano, orchestra, baroque
  performed by {artist} with a chamber orchestra
* electronic | electronic album | 8-18 | {adj} {noun} / Synthetic {noun}
  tags: synth, dance, ambient
  by {artist}, built on analog synths and deep bass
* folk | folk album | 8-18 | Songs of {adj} {noun} / {adj} Country
  tags: acoustic, singer-songwriter, roots
  by {artist} with acoustic guitar and close harmonies
== board_games
adj = Tiny, Lost, Grand, Sunken, Hidden, Emerald, Brass, Starlit
noun = Kingdoms, Railways, Harbors, Orchards, Dungeons, Islands, Empires, Lanterns
tone = clever, chaotic, elegant, cozy, tense
* strategy | strategy game | 35-80 | {adj} {noun} / {noun} of the {adj} Age
  tags: worker placement, economic, euro
  for 2-4 players about building trade networks
  for 1-4 players about settling uncharted islands
* party | party game | 15-30 | {adj} Charades / Who Stole the {noun}?
  tags: social, bluffing, word game
  for 4-10 players, full of bluffing and laughs
* cooperative | cooperative game | 30-60 | Escape from the {adj} {noun} / Keepers of the {noun}
  tags: co-op, campaign, puzzle
  where the players team up against a spreading storm
* family | family board game | 20-40 | {adj} Farmers / The {adj} Bakery
  tags: kids, tile laying, light
  for ages 8 and up with quick turns and bright tiles
* card game | card game | 10-22 | {adj} Tricks / Deck of {noun}
  tags: deck building, travel, two-player
  in a pocket-sized box for quick rounds
== outdoor
brand = Trailblazer, Northfork, Alpenglow, Summit Ridge, Cairn
n = 30, 38, 45, 55, 65
tone = lightweight, rugged, packable, weatherproof, versatile
* backpack | hiking backpack | 80-220 | {brand} {n}L Hiking Backpack
  tags: hiking, backpacking, travel
  with a padded hip belt and rain cover for multi-day treks
* tent | camping tent | 120-450 | {brand} 2-Person Dome Tent / {brand} Ultralight Trekking Tent
  tags: camping, shelter, ultralight
  that pitches in five minutes and sheds heavy rain
* sleeping bag | sleeping bag | 90-320 | {brand} -5C Down Sleeping Bag / {brand} Mummy Sleeping Bag
  tags: camping, warmth, down
  rated for cold nights above the tree line
* jacket | rain jacket | 90-280 | {brand} Storm Shell Jacket / {brand} Packable Rain Jacket
  tags: waterproof, hiking, clothing
  with sealed seams and pit zips for wet trails
* headlamp | headlamp | 20-70 | {brand} 400-Lumen Headlamp / {brand} Rechargeable Headlamp
  tags: lighting, camping, running
  with a red night mode and USB-C charging
== kitchen
brand = Copperleaf, Hearth & Co, Stonemill, Kitchara, Olivewood
n = 8, 10, 12
tone = sturdy, elegant, handy, professional, compact
* cookware | pan | 25-90 | {brand} {n}-inch Cast Iron Skillet / {brand} Carbon Steel Pan
  tags: cast iron, cooking, stovetop
  that sears steaks and bakes cornbread alike
* knives | kitchen knife | 30-160 | {brand} {n}-inch Chef Knife / {brand} Santoku Knife
  tags: cutlery, prep, steel
  forged from high-carbon steel with a balanced handle
* coffee | coffee maker | 25-400 | {brand} Pour-Over Coffee Set / {brand} Espresso Machine
  tags: espresso, brewing, breakfast
  for rich morning coffee at home
* baking | baking kit | 12-45 | {brand} Sourdough Starter Kit / {brand} Nonstick Baking Sheet
  tags: bread, pastry, oven
  for crusty loaves and evenly browned cookies
* appliance | kitchen appliance | 40-200 | {brand} High-Speed Blender / {brand} Rice Cooker
  tags: smoothies, countertop, electric
  with one-touch programs and easy cleaning
== electronics
brand = Voltra, Lumen Nova, Quanta, Sonique, Arcwave
model = X1, Pro 2, Air, S5, Max, Mini
tone = sleek, fast, compact, powerful, reliable
* headphones | pair of headphones | 60-350 | {brand} {model} Noise-Cancelling Headphones
  tags: audio, wireless, travel
  with 30-hour battery life and active noise cancelling
* speaker | bluetooth speaker | 30-200 | {brand} {model} Portable Speaker
  tags: audio, wireless, outdoor
  that is waterproof and fills a room with bass
* e-reader | e-reader | 90-250 | {brand} {model} E-Reader
  tags: reading, ebooks, screen
  with a glare-free screen and weeks of battery life
* smartwatch | smartwatch | 120-450 | {brand} {model} Smartwatch
  tags: fitness tracking, wearable, gps
  that tracks heart rate, sleep and GPS runs
* keyboard | mechanical keyboard | 50-180 | {brand} {model} Mechanical Keyboard
  tags: computer, gaming, typing
  with hot-swappable switches and an RGB backlight
== fitness
brand = Ironbloom, Pacewell, FlexCore, Stridewell, Zenrise
n = 8, 12, 16, 24
tone = durable, grippy, comfortable, compact, adjustable
* yoga | yoga mat | 20-80 | {brand} Eco Yoga Mat / {brand} Travel Yoga Mat
  tags: stretching, mindfulness, pilates
  with a non-slip surface for daily practice
* weights | strength tool | 30-150 | {brand} Adjustable Dumbbells / {brand} {n}kg Kettlebell
  tags: strength, home gym, training
  for full-body strength training at home
* running | running shoe | 70-180 | {brand} Road Runner Shoes / {brand} Trail Running Shoes
  tags: shoes, marathon, jogging
  with responsive cushioning for long miles
* recovery | recovery tool | 20-150 | {brand} Foam Roller / {brand} Massage Gun
  tags: massage, mobility, stretching
  that loosens tight muscles after workouts
* cardio | cardio accessory | 10-40 | {brand} Speed Jump Rope / {brand} Resistance Bands Set
  tags: hiit, endurance, home gym
  for quick high-intensity sessions
== garden
brand = Greenthumb, Fernhill, Bloomcraft, Rootwise, Meadowlark
plant = Tomato, Basil, Wildflower, Strawberry, Lavender, Chili
tone = hardy, handy, reliable, easy-care, durable
* seeds | seed kit | 8-30 | {brand} Heirloom {plant} Seed Kit / {brand} {plant} Grow Kit
  tags: vegetables, organic, indoor
  with everything needed to start on a sunny windowsill
* tools | garden tool | 12-45 | {brand} Bypass Pruning Shears / {brand} Stainless Hand Trowel
  tags: pruning, hand tools, steel
  with a rust-proof blade and a soft grip
* planters | planter | 25-180 | {brand} Raised Garden Bed / {brand} Self-Watering Planter
  tags: containers, raised bed, patio
  for patios, balconies and small yards
* watering | watering tool | 20-90 | {brand} Expandable Garden Hose / {brand} Drip Irrigation Kit
  tags: irrigation, hose, lawn
  that saves water in hot summers
* compost | composter | 40-160 | {brand} Tumbling Compost Bin / {brand} Worm Farm
  tags: soil, recycling, organic
  that turns kitchen scraps into rich soil
== video_games
adj = Hollow, Neon, Eternal, Shattered, Crimson, Iron, Starfall
noun = Knight, Drift, Odyssey, Legends, Protocol, Colony, Circuit
tone = addictive, gorgeous, challenging, relaxing, epic
* rpg | role-playing game | 30-70 | {noun} of {adj} Skies / {adj} {noun} Chronicles
  tags: open world, story, fantasy
  with a vast open world and branching quests
* racing | racing game | 20-60 | {adj} Drift Rally / {noun} Speedway
  tags: cars, multiplayer, arcade
  with split-screen multiplayer and licensed tracks
* puzzle | puzzle game | 5-25 | The {adj} Puzzle Box / {noun} Logic
  tags: logic, casual, brain teaser
  with hundreds of hand-crafted levels
* platformer | platformer | 10-30 | {adj} {noun} Jump / Super {noun} Dash
  tags: pixel art, indie, retro
  with tight controls and pixel-art worlds
* strategy game | strategy game | 20-60 | {noun} Commanders / {adj} {noun} Tactics
  tags: base building, tactics, sci-fi
  where you build a colony on a hostile planet
"""
_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_COUNTRIES = ("US", "DE", "FR", "GB", "ES", "IT", "NL", "SE", "PL", "CA", "JP", "BR", "IN", "AU")


@dataclass(frozen=True)
class _Kind:
    tag: str
    noun: str
    price: tuple[float, float]
    titles: list[str]
    tags: list[str] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)


def _parse_catalog(text: str) -> dict[str, tuple[dict[str, list[str]], list[_Kind]]]:
    """category -> (word pools, kinds), in table order."""
    catalog: dict[str, tuple[dict[str, list[str]], list[_Kind]]] = {}
    pools: dict[str, list[str]] = {}
    kinds: list[_Kind] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("== "):
            pools, kinds = {}, []
            catalog[line[3:].strip()] = (pools, kinds)
        elif line.startswith("* "):
            tag, noun, price, titles = (part.strip() for part in line[2:].split(" | "))
            lo, hi = (float(p) for p in price.split("-"))
            kinds.append(_Kind(tag, noun, (lo, hi), titles.split(" / ")))
        elif line.startswith("  tags: "):
            kinds[-1].tags.extend(line[8:].split(", "))
        elif line.startswith("  "):
            kinds[-1].endings.append(line.strip())
        else:
            name, values = line.split(" = ", 1)
            pools[name] = values.split(", ")
    return catalog


_CATEGORIES = _parse_catalog(_CATALOG)


@dataclass
class SampleData:
    """Sample records as plain JSON dicts (the shape of the topics' values)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)

    def rebased(self, start_ts: int) -> SampleData:
        """A copy whose interactions start at ``start_ts`` (epoch ms), spacing kept."""
        shift = start_ts - self.interactions[0]["ts"] if self.interactions else 0
        moved = [{**rec, "ts": rec["ts"] + shift} for rec in self.interactions]
        return replace(self, interactions=moved)


def _fill(pattern: str, pools: dict[str, list[str]], rng: random.Random) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: rng.choice(pools[m.group(1)]), pattern)


def _items(rng: random.Random) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[str]]]:
    """Items in category order, and (category, kind tag) -> item ids."""
    items: list[dict[str, Any]] = []
    by_kind: dict[tuple[str, str], list[str]] = {}
    for category, (pools, kinds) in _CATEGORIES.items():
        seen: set[str] = set()
        for i in range(N_ITEMS_PER_CATEGORY):
            kind = kinds[i % len(kinds)]
            for _ in range(1000):  # titles are unique within a category
                title = _fill(rng.choice(kind.titles), pools, rng)
                if title not in seen:
                    break
            else:
                raise RuntimeError(f"word pools of {category!r} are too small for unique titles")
            seen.add(title)
            tone = rng.choice(pools["tone"])
            article = "An" if tone[0] in "aeiou" else "A"
            ending = _fill(rng.choice(kind.endings), pools, rng)
            item_id = f"item-{len(items) + 1:04d}"
            items.append(
                {
                    "item_id": item_id,
                    "title": title,
                    "text": f"{article} {tone} {kind.noun} {ending}.",
                    "attributes": {
                        "category": category,
                        "tags": [kind.tag, *rng.sample(kind.tags, 2)],
                        "price": round(round(rng.uniform(*kind.price)) - 0.01, 2),  # x.99
                    },
                }
            )
            by_kind.setdefault((category, kind.tag), []).append(item_id)
    return items, by_kind


def generate(seed: int = 7) -> SampleData:
    """Build the sample data; the same seed always gives the same records."""
    rng = random.Random(seed)  # the only source of randomness: no set/hash order is used
    items, by_kind = _items(rng)
    all_ids = [item["item_id"] for item in items]
    users: list[dict[str, Any]] = []
    tastes: list[tuple[list[str], list[str]]] = []  # (favourite-kind items, interest items)
    activity: list[float] = []
    for n in range(1, N_USERS + 1):
        interests = rng.sample(list(_CATEGORIES), rng.choice((2, 2, 3)))
        tags = {c: [k.tag for k in _CATEGORIES[c][1]] for c in interests}
        favourite = [
            item_id
            for c in interests
            for tag in rng.sample(tags[c], rng.choice((1, 2)))
            for item_id in by_kind[(c, tag)]
        ]
        liked = [item_id for c in interests for tag in tags[c] for item_id in by_kind[(c, tag)]]
        tastes.append((favourite, liked))
        activity.append(rng.uniform(0.3, 2.0))
        attributes = {
            "age_band": rng.choice(_AGE_BANDS),
            "country": rng.choice(_COUNTRIES),
            "interests": interests,
        }
        users.append({"user_id": f"user-{n:03d}", "attributes": attributes})
    interactions: list[dict[str, Any]] = []
    ts = START_TS
    # Every user gets a few sessions first (no user without history), then activity decides.
    warm_up = [u for _ in range(3) for u in rng.sample(range(N_USERS), N_USERS)]
    while len(interactions) < N_INTERACTIONS:
        u = warm_up.pop() if warm_up else rng.choices(range(N_USERS), weights=activity)[0]
        favourite, liked = tastes[u]
        for _ in range(rng.randint(1, 4)):  # a short session over a few items
            draw = rng.random()
            pool = favourite if draw < 0.6 else liked if draw < 0.88 else all_ids
            item_id = rng.choice(pool)
            for kind, value in _funnel(rng, pool is not all_ids):
                ts += rng.randint(1000, 9000)  # strictly increasing, a few seconds apart
                event: dict[str, Any] = {
                    "event_id": f"evt-{len(interactions) + 1:05d}",
                    "user_id": users[u]["user_id"],
                    "item_id": item_id,
                    "type": kind,
                    "ts": ts,
                }
                if value is not None:
                    event["value"] = value
                interactions.append(event)
    return SampleData(items=items, users=users, interactions=interactions[:N_INTERACTIONS])


def _funnel(rng: random.Random, on_taste: bool) -> list[tuple[str, float | None]]:
    """view -> click -> purchase -> rating (1-5), each step less likely off the user's taste."""
    steps: list[tuple[str, float | None]] = [("view", None)]
    if rng.random() < (0.6 if on_taste else 0.3):
        steps.append(("click", None))
        if rng.random() < (0.35 if on_taste else 0.1):
            steps.append(("purchase", None))
            if rng.random() < 0.6:
                stars = rng.choice((3, 4, 5, 5) if on_taste else (1, 2, 3))
                steps.append(("rating", float(stars)))
    return steps


def _dump(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)


def _parse(texts: dict[str, str]) -> SampleData:
    records = {
        name: [json.loads(line) for line in text.splitlines() if line.strip()]
        for name, text in texts.items()
    }
    return SampleData(**records)


def write(directory: str | Path, data: SampleData | None = None) -> None:
    """Write ``items.jsonl``, ``users.jsonl``, ``interactions.jsonl`` (default: ``generate()``)."""
    data = generate() if data is None else data
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        (out / f"{name}.jsonl").write_text(_dump(getattr(data, name)), encoding="utf-8")


def load(directory: str | Path) -> SampleData:
    """Read the three JSONL files from ``directory``."""
    base = Path(directory)
    return _parse({n: (base / f"{n}.jsonl").read_text(encoding="utf-8") for n in _FILES})


def load_bundled() -> SampleData:
    """Read the sample files shipped inside the package (``promptrec/demo/data``)."""
    base = resources.files("promptrec.demo") / "data"
    return _parse({n: (base / f"{n}.jsonl").read_text(encoding="utf-8") for n in _FILES})


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the sample files: ``--out DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description="Write the promptrec sample data files.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    args = parser.parse_args(argv)
    data = generate(args.seed)
    write(args.out, data)
    counts = f"{len(data.items)} items, {len(data.users)} users, {len(data.interactions)} events"
    print(f"wrote {counts} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
