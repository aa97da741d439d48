"""Loader of the Amazon review data (2018 release, Ni et al.) for ``--format amazon``.

A data folder holds one category's two files, each plain or gzipped (``.json.gz``):

* reviews, JSON lines: ``<Category>_5.json`` (5-core) or ``<Category>.json`` (all reviews), with
  ``reviewerID``, ``asin``, ``overall`` and ``unixReviewTime`` (seconds; the interaction time
  becomes milliseconds). ``summary`` / ``reviewText`` are not item text: they are what one user
  wrote, and using them would leak the interaction into the catalog.
* metadata, JSON lines: ``meta_<Category>.json`` with ``asin``, ``title``, ``brand``, ``category``
  (list), ``description`` (list or str), ``feature``, ``price``. Some 2018 metadata files hold
  Python-literal lines (single quotes) instead of JSON: each line is tried as JSON first, then
  with :func:`ast.literal_eval` (which evaluates literals only, never code).

Item text: the title (``ItemRecord.title``), description (HTML tags and entities removed,
bounded), and as attributes the brand and the categories (the first, top-level "category" of
the tree is usually the store name, e.g. "Electronics", and is kept: it is still text about the
item). Every string is bounded so that one huge metadata row cannot dominate memory or the
prompt. A metadata row without an asin or title, and a review row without a user, item or
integer time, is a bad row (counted and skipped by reason, or the first one raises with
``strict``); a repeated asin keeps its first row.
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from promptrec.evaluation.datasets import DatasetError, Interaction, ItemRecord

__all__ = [
    "MAX_CATEGORIES",
    "MAX_DESCRIPTION_CHARS",
    "MAX_TITLE_CHARS",
    "clean_text",
    "load_amazon",
]

MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 1500
MAX_BRAND_CHARS = 100
MAX_CATEGORIES = 8
MAX_CATEGORY_CHARS = 80
Raw = list[tuple[Interaction, tuple[Path, int]]]
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class _Problems(Protocol):
    def bad(self, path: Path, line: int, reason: str, detail: str) -> None: ...


def clean_text(value: Any, limit: int) -> str:
    """Text of a metadata field: lists joined, HTML tags and entities removed, bounded.

    Anything that is not a string or a list of strings renders empty (metadata fields are
    sometimes numbers, dicts or nested lists by mistake; they are not item text).
    """
    if isinstance(value, list):
        value = " ".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return ""
    text = _TAG.sub(" ", html.unescape(value[: limit * 4]))  # cut early: rows can be huge
    text = html.unescape(text)  # entities inside tags' text, e.g. "&amp;amp;"
    return _SPACE.sub(" ", text).strip()[:limit].rstrip()


def _find(folder: Path, meta: bool) -> Path:
    """The one reviews (or metadata) file of the folder, preferring the 5-core reviews."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.endswith((".json", ".json.gz"))
    )
    if meta:
        found = [p for p in files if p.name.startswith("meta_")]
        what = "metadata file meta_<Category>.json[.gz]"
    else:
        reviews = [p for p in files if not p.name.startswith("meta_")]
        core = [p for p in reviews if p.name.split(".json")[0].endswith("_5")]
        found = core or reviews
        what = "reviews file <Category>_5.json[.gz] or <Category>.json[.gz]"
    if not found:
        raise DatasetError(f"missing {what} in {folder} (needed by the amazon format)")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DatasetError(f"{folder} holds several candidates for the {what}: {names}")
    return found[0]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip errors are OSErrors
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _record(line: str) -> dict[str, Any] | None:
    """One JSON (or Python-literal) object, or None."""
    try:
        value = json.loads(line)
    except ValueError:
        try:
            value = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _item(row: dict[str, Any]) -> ItemRecord | None:
    asin, title = row.get("asin"), clean_text(row.get("title"), MAX_TITLE_CHARS)
    if not isinstance(asin, str) or not asin.strip() or not title:
        return None
    attributes: dict[str, Any] = {}
    brand = clean_text(row.get("brand"), MAX_BRAND_CHARS)
    if brand:
        attributes["brand"] = brand
    raw = row.get("category")
    categories = raw if isinstance(raw, list) else []
    names = [clean_text(c, MAX_CATEGORY_CHARS) for c in categories]
    names = list(dict.fromkeys(n for n in names if n))[:MAX_CATEGORIES]  # unique, in order
    if names:
        attributes["categories"] = names
    description = clean_text(row.get("description"), MAX_DESCRIPTION_CHARS)
    if not description:  # many rows have only bullet "features"; they describe the item too
        description = clean_text(row.get("feature"), MAX_DESCRIPTION_CHARS)
    return ItemRecord(asin.strip(), title, description, attributes)


def _interaction(row: dict[str, Any]) -> Interaction | None:
    user, asin, ts = row.get("reviewerID"), row.get("asin"), row.get("unixReviewTime")
    if not (isinstance(user, str) and user.strip() and isinstance(asin, str) and asin.strip()):
        return None
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        return None
    return Interaction(user.strip(), asin.strip(), ts * 1000)


def load_amazon(
    folder: Path, problems: _Problems
) -> tuple[list[ItemRecord], dict[str, dict[str, Any]], Raw]:
    """Items, (no) user profiles and raw interactions of an Amazon 2018 category folder."""
    meta, reviews = _find(folder, meta=True), _find(folder, meta=False)
    items: dict[str, ItemRecord] = {}
    for number, line in _lines(meta):
        row = _record(line)
        if row is None:
            problems.bad(meta, number, "bad_row", "not a JSON (or Python-literal) object")
            continue
        item = _item(row)
        if item is None:
            problems.bad(meta, number, "bad_item", "metadata row without asin or title")
            continue
        items.setdefault(item.item_id, item)  # the release repeats some asins: keep the first
    raw: Raw = []
    for number, line in _lines(reviews):
        row = _record(line)
        if row is None:
            problems.bad(reviews, number, "bad_row", "not a JSON (or Python-literal) object")
            continue
        event = _interaction(row)
        if event is None:
            problems.bad(
                reviews, number, "bad_review", "review without reviewerID, asin or unixReviewTime"
            )
            continue
        raw.append((event, (reviews, number)))
    return list(items.values()), {}, raw
