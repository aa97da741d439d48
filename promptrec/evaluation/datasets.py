"""Offline data sets: MovieLens-100K, MovieLens CSV ("latest" releases), our JSONL events and the
Amazon review data (2018 release; :mod:`promptrec.evaluation.amazon`).

Every loader returns one in-memory :class:`Dataset`: items with text fields, users with profile
attributes, and interactions ``(user_id, item_id, ts)`` in time order (``ts`` in epoch ms; ties
keep file order). Every rating counts as an interaction, whatever its value.

Bad-row policy (documented in the README): a row that cannot be parsed (wrong field count, a
non-numeric id or timestamp, invalid JSON or schema) or an interaction naming an unknown item is
*counted and skipped*; the loader logs one warning with the count per reason and the first few
``file:line`` locations, and :attr:`Dataset.skipped` keeps the counts. ``strict=True`` raises
:class:`DatasetError` at the first bad row instead, naming ``file:line``. A missing required file
or a data set with no usable interaction is always a :class:`DatasetError`. Repeated
``(user, item)`` pairs keep only their first occurrence (``skipped["duplicate"]``): with seen
items excluded from ranking, a repeat could never be hit and would only add noise.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptrec.encoder.exceptions import EncoderError

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetError",
    "Interaction",
    "ItemRecord",
    "load_dataset",
    "write_jsonl",
]

log = logging.getLogger(__name__)

FORMATS = ("movielens-100k", "movielens-csv", "jsonl", "amazon")
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_MAX_TAGS = 20  # most frequent tags kept per item (movielens-csv)
_SHOWN_LOCATIONS = 5


class DatasetError(EncoderError):
    """A data folder is missing, unreadable, of the wrong format, or holds no usable data."""


@dataclass(frozen=True)
class ItemRecord:
    """One catalog item, in the shape of an ``items`` topic event."""

    item_id: str
    title: str
    text: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        """The ``items`` topic record of this item."""
        return {
            "item_id": self.item_id,
            "title": self.title,
            "text": self.text,
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class Interaction:
    """A user acting on an item at ``ts`` (epoch milliseconds)."""

    user_id: str
    item_id: str
    ts: int


@dataclass
class Dataset:
    """Items, user profiles and time-ordered interactions of one data set."""

    name: str
    format: str
    items: list[ItemRecord]
    users: dict[str, dict[str, Any]]  # user_id -> profile attributes (may be empty)
    interactions: list[Interaction]  # sorted by ts, stable
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped

    @property
    def item_ids(self) -> list[str]:
        """Item ids in catalog order."""
        return [item.item_id for item in self.items]

    def sequences(self) -> dict[str, list[str]]:
        """Per user, the item ids in time order (users in order of first appearance)."""
        out: dict[str, list[str]] = defaultdict(list)
        for event in self.interactions:
            out[event.user_id].append(event.item_id)
        return dict(out)

    def first_users(self, n: int) -> list[str]:
        """The first ``n`` users in order of their first interaction."""
        out: dict[str, None] = {}
        for event in self.interactions:
            if len(out) >= n:
                break
            out.setdefault(event.user_id)
        return list(out)

    def without_users(self, users: set[str]) -> Dataset:
        """A copy without the interactions of ``users`` (the catalog is kept)."""
        kept = [e for e in self.interactions if e.user_id not in users]
        return Dataset(self.name, self.format, self.items, self.users, kept, dict(self.skipped))

    def summary(self) -> str:
        """One line: counts of items, users, interactions and skipped rows."""
        users = len({e.user_id for e in self.interactions})
        skipped = sum(self.skipped.values())
        return (
            f"{self.name}: {len(self.items)} items, {users} users, "
            f"{len(self.interactions)} interactions, {skipped} rows skipped"
        )


class _Problems:
    """Counts bad rows per reason and remembers where the first ones were."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.where: list[str] = []

    def bad(self, path: Path, line: int, reason: str, detail: str) -> None:
        message = f"{path}:{line}: {detail}"
        if self.strict:
            raise DatasetError(message)
        self.counts[reason] += 1
        if len(self.where) < _SHOWN_LOCATIONS:
            self.where.append(message)

    def report(self, name: str) -> None:
        if self.counts:
            counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
            log.warning("%s: skipped %s; first: %s", name, counts, " | ".join(self.where))


def load_dataset(path: Path, fmt: str, *, strict: bool = False) -> Dataset:
    """Loads the data set in folder ``path`` of format ``fmt`` (one of :data:`FORMATS`).

    Raises:
        DatasetError: Unknown format, missing folder or file, a bad row with ``strict``, or no
            usable interaction.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown data format {fmt!r}; known: {', '.join(FORMATS)}")
    if not path.is_dir():
        raise DatasetError(f"data folder {path} does not exist or is not a folder")
    problems = _Problems(strict)
    loader = {
        "movielens-100k": _load_ml100k,
        "movielens-csv": _load_mlcsv,
        "jsonl": _load_jsonl,
        "amazon": _load_amazon,
    }
    items, users, raw = loader[fmt](path, problems)
    known = {item.item_id for item in items}
    kept: list[Interaction] = []
    for event, where in raw:
        if event.item_id not in known:
            problems.bad(where[0], where[1], "unknown_item", f"unknown item {event.item_id!r}")
            continue
        kept.append(event)
    kept.sort(key=lambda e: e.ts)  # stable: ties keep file order
    seen: set[tuple[str, str]] = set()
    interactions = []
    for event in kept:
        pair = (event.user_id, event.item_id)
        if pair in seen:
            problems.counts["duplicate"] += 1
            continue
        seen.add(pair)
        interactions.append(event)
    problems.report(path.name)
    if not interactions:
        raise DatasetError(f"data folder {path} ({fmt}) holds no usable interaction")
    return Dataset(path.name, fmt, items, users, interactions, dict(problems.counts))


_Raw = list[tuple[Interaction, tuple[Path, int]]]


def _required(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DatasetError(f"missing file {path} (needed by this data format)")
    return path


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding=encoding, newline="") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line.rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _int(text: str) -> int:
    return int(text.strip())


def _load_ml100k(
    folder: Path, problems: _Problems
) -> tuple[list[ItemRecord], dict[str, dict[str, Any]], _Raw]:
    data, item_file = _required(folder, "u.data"), _required(folder, "u.item")
    genres = list(_ML100K_GENRES)
    if (folder / "u.genre").is_file():
        pairs = [line.split("|") for _, line in _lines(folder / "u.genre", "latin-1")]
        genres = [name for name, *_ in pairs if name] or genres
    items = []
    for number, line in _lines(item_file, "latin-1"):
        parts = line.split("|")
        try:
            item_id = str(_int(parts[0]))
            flags = [int(f) for f in parts[5 : 5 + len(genres)]]
        except (ValueError, IndexError):
            problems.bad(item_file, number, "bad_row", "expected id|title|date|...|genre flags")
            continue
        names = [g for g, f in zip(genres, flags, strict=False) if f and g != "unknown"]
        attributes: dict[str, Any] = {"genres": names} if names else {}
        items.append(ItemRecord(item_id, parts[1].strip(), "", attributes))
    users: dict[str, dict[str, Any]] = {}
    if (folder / "u.user").is_file():
        user_file = folder / "u.user"
        for number, line in _lines(user_file, "latin-1"):
            parts = line.split("|")
            if len(parts) < 5 or not parts[0].strip().isdigit():
                problems.bad(user_file, number, "bad_row", "expected id|age|gender|job|zip")
                continue
            users[parts[0].strip()] = {
                "age": parts[1].strip(),
                "gender": parts[2].strip(),
                "occupation": parts[3].strip(),
            }
    raw: _Raw = []
    for number, line in _lines(data, "latin-1"):
        parts = line.split("\t")
        try:
            user, item, _rating, ts = (_int(p) for p in parts[:4])
            if len(parts) != 4:
                raise ValueError
        except ValueError:
            problems.bad(data, number, "bad_row", "expected user<TAB>item<TAB>rating<TAB>ts")
            continue
        raw.append((Interaction(str(user), str(item), ts * 1000), (data, number)))
    return items, users, raw


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _load_mlcsv(
    folder: Path, problems: _Problems
) -> tuple[list[ItemRecord], dict[str, dict[str, Any]], _Raw]:
    ratings, movies = _required(folder, "ratings.csv"), _required(folder, "movies.csv")
    tags: dict[str, Counter[str]] = defaultdict(Counter)
    if (folder / "tags.csv").is_file():
        for _number, row in _csv_rows(folder / "tags.csv"):
            movie, tag = (row.get("movieId") or "").strip(), (row.get("tag") or "").strip()
            if movie and tag:  # a tag row is optional text: a bad one is simply not used
                tags[movie][tag.lower()] += 1
    items = []
    for number, row in _csv_rows(movies):
        movie, title = (row.get("movieId") or "").strip(), (row.get("title") or "").strip()
        if not movie or not title:
            problems.bad(movies, number, "bad_row", "expected movieId,title,genres")
            continue
        attributes: dict[str, Any] = {}
        genres = [g for g in (row.get("genres") or "").split("|") if g and "no genres" not in g]
        if genres:
            attributes["genres"] = genres
        if tags.get(movie):
            attributes["tags"] = [t for t, _ in tags[movie].most_common(_MAX_TAGS)]
        items.append(ItemRecord(movie, title, "", attributes))
    raw: _Raw = []
    for number, row in _csv_rows(ratings):
        try:
            user, movie_id = _int(row["userId"]), _int(row["movieId"])
            ts = round(float(row["timestamp"]))
        except (KeyError, TypeError, ValueError):
            problems.bad(ratings, number, "bad_row", "expected userId,movieId,rating,timestamp")
            continue
        raw.append((Interaction(str(user), str(movie_id), ts * 1000), (ratings, number)))
    return items, {}, raw


def _load_jsonl(
    folder: Path, problems: _Problems
) -> tuple[list[ItemRecord], dict[str, dict[str, Any]], _Raw]:
    # The stream schemas are the one definition of a valid event; offline data obeys them too.
    from promptrec.events.exceptions import InvalidEvent
    from promptrec.events.schemas import Limits, decode_interaction, decode_item, decode_user

    limits = Limits(max_bytes=1 << 20, min_ts=0)
    max_ts = 1 << 62  # offline data may lie anywhere in time
    item_file = _required(folder, "items.jsonl")
    events = _required(folder, "interactions.jsonl")
    items: dict[str, ItemRecord] = {}
    for number, line in _lines(item_file, "utf-8"):
        try:
            item = decode_item(line.encode(), limits, max_ts=max_ts)
        except InvalidEvent as exc:
            problems.bad(item_file, number, str(exc.reason), str(exc))
            continue
        if item.deleted:
            items.pop(item.item_id, None)
        else:
            items[item.item_id] = ItemRecord(
                item.item_id, item.title, item.text, dict(item.attributes)
            )
    users: dict[str, dict[str, Any]] = {}
    user_file = folder / "users.jsonl"
    if user_file.is_file():
        for number, line in _lines(user_file, "utf-8"):
            try:
                user = decode_user(line.encode(), limits, max_ts=max_ts)
            except InvalidEvent as exc:
                problems.bad(user_file, number, str(exc.reason), str(exc))
                continue
            users[user.user_id] = dict(user.attributes)
    raw: _Raw = []
    for number, line in _lines(events, "utf-8"):
        try:
            event = decode_interaction(line.encode(), limits, max_ts=max_ts)
        except InvalidEvent as exc:
            problems.bad(events, number, str(exc.reason), str(exc))
            continue
        raw.append((Interaction(event.user_id, event.item_id, event.ts), (events, number)))
    return list(items.values()), users, raw


def _load_amazon(
    folder: Path, problems: _Problems
) -> tuple[list[ItemRecord], dict[str, dict[str, Any]], _Raw]:
    from promptrec.evaluation.amazon import load_amazon  # imports this module's records

    return load_amazon(folder, problems)


def write_jsonl(dataset: Dataset, folder: Path) -> None:
    """Writes ``dataset`` as ``items.jsonl``, ``users.jsonl``, ``interactions.jsonl``."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "items.jsonl").open("w", encoding="utf-8") as handle:
        for item in dataset.items:
            handle.write(json.dumps(item.to_event()) + "\n")
    with (folder / "users.jsonl").open("w", encoding="utf-8") as handle:
        for user_id, attributes in dataset.users.items():
            handle.write(json.dumps({"user_id": user_id, "attributes": attributes}) + "\n")
    with (folder / "interactions.jsonl").open("w", encoding="utf-8") as handle:
        for n, e in enumerate(dataset.interactions):
            record = {
                "event_id": f"e{n}",
                "user_id": e.user_id,
                "item_id": e.item_id,
                "type": "rating",
                "ts": e.ts,
            }
            handle.write(json.dumps(record) + "\n")
