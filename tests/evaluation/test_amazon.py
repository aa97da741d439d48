"""The Amazon 2018 review format (``--format amazon``) on rows written by the test."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from promptrec.cli.main import main
from promptrec.evaluation.amazon import MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, clean_text
from promptrec.evaluation.datasets import DatasetError, load_dataset

META = [
    {
        "asin": "B001",
        "title": "Trail <b>Running</b> Shoes &amp; Socks",
        "brand": "Acme",
        "category": ["Clothing", "Shoes", "Clothing", "Running"],
        "description": ["<p>Light shoes.</p>", "<ul><li>Grippy sole</li></ul>"],
        "feature": ["ignored when a description exists"],
        "price": "$40.00",
    },
    {"asin": "B002", "title": "Camp Stove", "description": "", "feature": ["Burns gas"]},
    {"asin": "B003", "title": "Tent", "category": "not a list", "description": 7},
]


def _write(path: Path, lines: list[str], gz: bool) -> None:
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _review(user: str, asin: str, ts: Any, **extra: Any) -> str:
    row = {"reviewerID": user, "asin": asin, "overall": 5.0, "unixReviewTime": ts}
    row.update({"summary": "great", "reviewText": "I liked it", **extra})
    return json.dumps(row)


def _folder(tmp_path: Path, gz: bool, reviews: list[str], meta: list[str] | None = None) -> Path:
    folder = tmp_path / ("gz" if gz else "plain")
    folder.mkdir()
    _write(folder / "meta_Sports.json", meta or [json.dumps(m) for m in META], gz)
    _write(folder / "Sports_5.json", reviews, gz)
    return folder


GOOD = [_review("u1", "B002", 200), _review("u1", "B001", 100), _review("u2", "B003", 150)]


@pytest.mark.parametrize("gz", [False, True])
def test_items_and_interactions_plain_and_gzipped(tmp_path: Path, gz: bool) -> None:
    ds = load_dataset(_folder(tmp_path, gz, GOOD), "amazon")
    assert ds.format == "amazon" and ds.skipped == {}
    assert [(e.user_id, e.item_id, e.ts) for e in ds.interactions] == [
        ("u1", "B001", 100_000),  # seconds -> ms, time order
        ("u2", "B003", 150_000),
        ("u1", "B002", 200_000),
    ]
    items = {i.item_id: i for i in ds.items}
    shoes = items["B001"]
    assert shoes.title == "Trail Running Shoes & Socks"  # tags stripped, entity decoded
    assert shoes.text == "Light shoes. Grippy sole"
    assert shoes.attributes == {"brand": "Acme", "categories": ["Clothing", "Shoes", "Running"]}
    assert items["B002"].text == "Burns gas"  # no description: the features describe it
    assert items["B003"].attributes == {} and items["B003"].text == ""
    assert ds.users == {}


def test_python_literal_metadata_lines_are_read(tmp_path: Path) -> None:
    meta = [
        "{'asin': 'B001', 'title': 'Shoes', 'category': ['Clothing'], 'brand': 'Acme'}",
        repr({"asin": "B002", "title": 'Stove\'s "best" model', "description": ["Hot"]}),
        json.dumps({"asin": "B003", "title": "Tent"}),
    ]
    ds = load_dataset(_folder(tmp_path, True, GOOD, meta), "amazon")
    items = {i.item_id: i for i in ds.items}
    assert items["B001"].attributes == {"brand": "Acme", "categories": ["Clothing"]}
    assert items["B002"].title == 'Stove\'s "best" model'
    assert len(ds.interactions) == 3


def test_bad_rows_counted_by_reason_and_strict_fails_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    meta = [
        json.dumps(META[0]),
        "{not json and not a literal",
        json.dumps({"asin": "B009"}),  # no title
        "__import__('os').system('echo no')",  # never evaluated: literal_eval rejects calls
        json.dumps(["a", "list"]),
        json.dumps({"asin": "B001", "title": "A repeat keeps the first row"}),
        json.dumps({"asin": "B002", "title": "Camp Stove"}),
    ]
    reviews = [
        _review("u1", "B001", 100),
        "garbage",
        _review("u1", "B002", "yesterday"),
        _review("", "B002", 300),
        _review("u1", "B002", True),
        _review("u2", "B404", 300),  # no metadata
        _review("u1", "B001", 400),  # repeat of (u1, B001)
        _review("u2", "B002", 500),
    ]
    folder = _folder(tmp_path, False, reviews, meta)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(folder, "amazon")
    assert ds.skipped == {
        "bad_row": 4, "bad_item": 1, "bad_review": 3, "unknown_item": 1, "duplicate": 1,
    }  # fmt: skip
    assert [(e.user_id, e.item_id) for e in ds.interactions] == [("u1", "B001"), ("u2", "B002")]
    assert {i.item_id: i.title for i in ds.items}["B001"] == "Trail Running Shoes & Socks"
    assert "meta_Sports.json:2" in caplog.text
    with pytest.raises(DatasetError, match=r"meta_Sports\.json:2"):
        load_dataset(folder, "amazon", strict=True)


def test_missing_ambiguous_and_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    _write(folder / "Sports.json", GOOD, False)
    with pytest.raises(DatasetError, match="missing metadata file"):
        load_dataset(folder, "amazon")
    _write(folder / "meta_Sports.json", [json.dumps(m) for m in META], False)
    assert len(load_dataset(folder, "amazon").interactions) == 3  # all-reviews file is fine
    _write(folder / "Sports_5.json", GOOD[:1], False)
    assert len(load_dataset(folder, "amazon").interactions) == 1  # the 5-core file wins
    _write(folder / "Toys_5.json", GOOD, False)
    with pytest.raises(DatasetError, match="several candidates"):
        load_dataset(folder, "amazon")
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "meta_X.json.gz").write_bytes(b"this is not gzip")
    _write(bad / "X_5.json", GOOD, False)
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(bad, "amazon")
    empty = tmp_path / "c"
    empty.mkdir()
    _write(empty / "meta_X.json", [json.dumps(m) for m in META], False)
    _write(empty / "X_5.json", ["garbage"], False)
    with pytest.raises(DatasetError, match="no usable interaction"):
        load_dataset(empty, "amazon")


def test_text_is_cleaned_and_bounded() -> None:
    assert clean_text("<div>a&amp;b</div>\n\n c", 100) == "a&b c"  # whitespace collapsed
    assert clean_text(["x", 3, None, "y"], 100) == "x y"
    assert clean_text({"a": 1}, 100) == "" and clean_text(None, 100) == ""
    huge = {"asin": "B1", "title": "T" * 10_000, "description": "d " * 50_000}
    from promptrec.evaluation.amazon import _item

    item = _item(huge)
    assert item is not None
    assert len(item.title) == MAX_TITLE_CHARS and len(item.text) <= MAX_DESCRIPTION_CHARS


def test_strict_flag_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path, True, [*GOOD, "garbage"])
    argv = ["train", "--data", str(folder), "--format", "amazon", "--out", str(tmp_path / "m")]
    assert main([*argv, "--strict", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Sports_5.json.gz:4" in err and "Traceback" not in err
