"""Bundled sample data: loads, is consistent, decodes with the schemas, matches generate()."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from promptrec.demo import sample_data
from promptrec.demo.sample_data import START_TS, SampleData, generate, load, load_bundled, write
from promptrec.events.schemas import decode_interaction, decode_item, decode_user
from promptrec.streams.settings import StreamSettings

DATA_DIR = Path(sample_data.__file__).parent / "data"


@pytest.fixture(scope="module")
def bundled() -> SampleData:
    return load_bundled()


def test_counts(bundled: SampleData) -> None:
    assert len(bundled.items) == 300
    assert len(bundled.users) == 60
    assert len(bundled.interactions) == 3000
    categories = Counter(item["attributes"]["category"] for item in bundled.items)
    assert len(categories) >= 10 and min(categories.values()) >= 20


def test_ids_unique(bundled: SampleData) -> None:
    for records, key in (
        (bundled.items, "item_id"),
        (bundled.users, "user_id"),
        (bundled.interactions, "event_id"),
    ):
        ids = [r[key] for r in records]
        assert len(set(ids)) == len(ids), key
    titles = Counter((i["attributes"]["category"], i["title"]) for i in bundled.items)
    assert max(titles.values()) == 1


def test_interactions_reference_known_users_and_items(bundled: SampleData) -> None:
    items = {i["item_id"] for i in bundled.items}
    users = {u["user_id"] for u in bundled.users}
    assert all(e["item_id"] in items and e["user_id"] in users for e in bundled.interactions)
    per_user = Counter(e["user_id"] for e in bundled.interactions)
    assert set(per_user) == users and min(per_user.values()) >= 3  # every user has history


def test_timestamps_increase_from_2026(bundled: SampleData) -> None:
    ts = [e["ts"] for e in bundled.interactions]
    assert ts[0] > START_TS == 1767225600000
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert min(gaps) >= 1000 and max(gaps) <= 10_000  # a few seconds apart, strictly increasing


def test_interaction_types_and_values(bundled: SampleData) -> None:
    types = Counter(e["type"] for e in bundled.interactions)
    assert set(types) == {"view", "click", "purchase", "rating"}
    assert min(types.values()) >= 50
    for event in bundled.interactions:
        if event["type"] == "rating":
            assert event["value"] in {1.0, 2.0, 3.0, 4.0, 5.0}
        else:
            assert "value" not in event


def test_item_and_user_shapes(bundled: SampleData) -> None:
    categories = {i["attributes"]["category"] for i in bundled.items}
    for item in bundled.items:
        attrs = item["attributes"]
        assert item["title"] and item["text"].endswith(".") and item["title"] not in item["text"]
        assert len(attrs["tags"]) == len(set(attrs["tags"])) >= 2
        assert attrs["price"] > 0 and f"{attrs['price']:.2f}".endswith(".99")
    for user in bundled.users:
        attrs = user["attributes"]
        assert set(attrs) == {"age_band", "country", "interests"}
        assert 2 <= len(attrs["interests"]) <= 3 and set(attrs["interests"]) <= categories


def test_users_mostly_interact_with_their_interests(bundled: SampleData) -> None:
    category = {i["item_id"]: i["attributes"]["category"] for i in bundled.items}
    interests = {u["user_id"]: set(u["attributes"]["interests"]) for u in bundled.users}
    hits = sum(category[e["item_id"]] in interests[e["user_id"]] for e in bundled.interactions)
    assert hits / len(bundled.interactions) > 0.8
    purchases = [e for e in bundled.interactions if e["type"] == "purchase"]
    on_taste = sum(category[e["item_id"]] in interests[e["user_id"]] for e in purchases)
    assert on_taste / len(purchases) > 0.9


def test_every_record_passes_the_schemas(bundled: SampleData) -> None:
    limits = StreamSettings().limits()
    max_ts = bundled.interactions[-1]["ts"]
    for item in bundled.items:
        decoded = decode_item(json.dumps(item).encode(), limits, max_ts=max_ts)
        assert (decoded.title, decoded.text) == (item["title"], item["text"])  # nothing cut
    for user in bundled.users:
        decode_user(json.dumps(user).encode(), limits, max_ts=max_ts)
    for event in bundled.interactions:
        decode_interaction(json.dumps(event).encode(), limits, max_ts=max_ts)


def test_generate_is_deterministic_and_seeded() -> None:
    assert generate() == generate(7)
    other = generate(8)
    assert other.items != generate(7).items and other.interactions != generate(7).interactions


def test_bundled_files_equal_generate(bundled: SampleData, tmp_path: Path) -> None:
    assert bundled == generate()
    write(tmp_path)  # byte-identical, so regenerating leaves no diff
    for name in ("items", "users", "interactions"):
        fresh = (tmp_path / f"{name}.jsonl").read_bytes()
        assert fresh == (DATA_DIR / f"{name}.jsonl").read_bytes(), name
    assert load(tmp_path) == bundled


def test_rebased_shifts_interactions_only(bundled: SampleData) -> None:
    moved = bundled.rebased(2_000_000_000_000)
    assert moved.interactions[0]["ts"] == 2_000_000_000_000
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(moved.interactions)]
    orig = [b["ts"] - a["ts"] for a, b in itertools.pairwise(bundled.interactions)]
    assert gaps == orig and moved.items == bundled.items
    assert bundled.interactions[0]["ts"] < 2_000_000_000_000  # the original is untouched


def test_cli_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample_data.main(["--out", str(tmp_path / "out"), "--seed", "3"]) == 0
    assert load(tmp_path / "out") == generate(3)
    assert "300 items" in capsys.readouterr().out
