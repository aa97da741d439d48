"""Loaders of the three offline formats, on tiny files written by the tests."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from promptrec.evaluation.datasets import DatasetError, load_dataset, write_jsonl


def _ml100k(folder: Path, data: str, items: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(data, encoding="latin-1")
    flags = "|".join(["0"] * 19)
    action = "|".join(["0", "1"] + ["0"] * 17)
    default_items = (
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://x|{action}\n"
        f"3|Caf\xe9 (1996)|01-Jan-1996||http://x|{flags}\n"
    )
    (folder / "u.item").write_text(items or default_items, encoding="latin-1")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n", "latin-1")
    return folder


def test_movielens_100k_time_order_text_and_profiles(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml", "1\t2\t5\t300\n1\t1\t3\t100\n2\t3\t4\t200\n1\t3\t1\t300\n")
    ds = load_dataset(folder, "movielens-100k")
    assert [(e.user_id, e.item_id, e.ts) for e in ds.interactions] == [
        ("1", "1", 100_000),
        ("2", "3", 200_000),
        ("1", "2", 300_000),  # tie at ts 300: file order kept
        ("1", "3", 300_000),
    ]
    items = {i.item_id: i for i in ds.items}
    assert items["2"].attributes == {"genres": ["Action"]}
    assert items["3"].title == "Caf\xe9 (1996)"  # latin-1 decoded
    assert ds.users["2"] == {"age": "53", "gender": "F", "occupation": "other"}
    assert ds.sequences() == {"1": ["1", "2", "3"], "2": ["3"]}


def test_bad_rows_are_counted_and_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _ml100k(tmp_path / "ml", "1\t1\t5\t100\n1\tx\t5\t200\n1\t9\t5\t300\n1\t1\t4\t400\n")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(folder, "movielens-100k")
    assert len(ds.interactions) == 1
    assert ds.skipped == {"bad_row": 1, "unknown_item": 1, "duplicate": 1}
    assert "u.data:2" in caplog.text


def test_strict_mode_names_file_and_line(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml", "1\t1\t5\t100\n1\tx\t5\t200\n")
    with pytest.raises(DatasetError, match=r"u\.data:2"):
        load_dataset(folder, "movielens-100k", strict=True)


@pytest.mark.parametrize(
    ("fmt", "files", "message"),
    [
        ("movielens-100k", {}, "missing file .*u.data"),
        ("movielens-csv", {"ratings.csv": "userId,movieId,rating,timestamp\n"}, "movies.csv"),
        ("jsonl", {"items.jsonl": ""}, "interactions.jsonl"),
        ("nope", {}, "unknown data format"),
    ],
)
def test_missing_files_and_formats_are_clear_errors(
    tmp_path: Path, fmt: str, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path, fmt)


def test_no_usable_interaction_is_an_error(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml", "garbage\n")
    with pytest.raises(DatasetError, match="no usable interaction"):
        load_dataset(folder, "movielens-100k")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing", "movielens-100k")


def test_movielens_csv_with_quoted_titles_and_tags(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Heat (1995),(no genres listed)\n",
        encoding="utf-8",
    )
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,4.5,964982703\n1,1,4.0,964981247\n2,1,oops\n"
    )
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n1,1,Politics,1\n2,1,politics,2\n2,1,funny,3\n"
    )
    ds = load_dataset(tmp_path, "movielens-csv")
    items = {i.item_id: i for i in ds.items}
    assert items["1"].title == "American President, The (1995)"
    assert items["1"].attributes == {
        "genres": ["Comedy", "Drama", "Romance"],
        "tags": ["politics", "funny"],
    }
    assert items["2"].attributes == {}
    assert [e.item_id for e in ds.interactions] == ["1", "2"]
    assert ds.skipped == {"bad_row": 1}


def test_jsonl_uses_the_event_schemas_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text(
        json.dumps({"item_id": "a", "title": "Alpha", "attributes": {"genres": ["x"]}})
        + "\n"
        + json.dumps({"item_id": "b", "title": ""})  # no text: schema error
        + "\n"
        + json.dumps({"item_id": "c", "text": "Gamma"})
        + "\n"
    )
    events = [
        {"event_id": "1", "user_id": "u", "item_id": "c", "type": "view", "ts": 20},
        {"event_id": "2", "user_id": "u", "item_id": "a", "type": "click", "ts": 10},
        {"event_id": "3", "user_id": "u", "item_id": "a", "type": "like", "ts": 30},
    ]
    (tmp_path / "interactions.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "users.jsonl").write_text(json.dumps({"user_id": "u", "attributes": {"k": 1}}))
    ds = load_dataset(tmp_path, "jsonl")
    assert ds.item_ids == ["a", "c"]
    assert [(e.item_id, e.ts) for e in ds.interactions] == [("a", 10), ("c", 20)]
    assert ds.skipped == {"empty_text": 1, "unknown_type": 1}
    assert ds.users == {"u": {"k": 1}}
    write_jsonl(ds, tmp_path / "copy")
    again = load_dataset(tmp_path / "copy", "jsonl")
    assert again.interactions == ds.interactions
    assert again.items == ds.items
