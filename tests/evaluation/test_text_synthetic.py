"""The generated text-heavy data set: readable as jsonl, themes in the text, bad sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptrec.evaluation.datasets import load_dataset
from promptrec.evaluation.text_synthetic import THEMES, main, text_dataset


def test_text_dataset_round_trips_and_users_follow_their_themes(tmp_path: Path) -> None:
    ds = text_dataset(n_items=700, n_users=60, seed=1)
    assert main(["--out", str(tmp_path), "--items", "700", "--users", "60", "--seed", "1"]) == 0
    back = load_dataset(tmp_path, "jsonl", strict=True)  # no bad row at all
    assert [e.item_id for e in back.interactions] == [e.item_id for e in ds.interactions]
    assert [e.ts for e in ds.interactions] == sorted(e.ts for e in ds.interactions)
    theme = {}
    for item in ds.items:
        words = f"{item.title} {item.text}".lower()
        hits = [t for t, vocab in THEMES.items() if any(w in words.split() for w in vocab)]
        theme[item.item_id] = hits[0]
        assert len(hits) == 1  # one theme's words per item
    # Each user's most frequent theme covers well over a random share (1/20) of the history.
    for user, seq in ds.sequences().items():
        counts: dict[str, int] = {}
        for item in seq:
            counts[theme[item]] = counts.get(theme[item], 0) + 1
        assert max(counts.values()) / len(seq) > 0.3, user
        assert len(set(seq)) == len(seq)  # no repeats


def test_text_dataset_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="min_len"):
        text_dataset(n_items=2000, min_len=2)
    with pytest.raises(ValueError, match="items"):
        text_dataset(n_items=100)
    assert main(["--out", "/nonexistent/x", "--items", "10"]) == 2
    assert "error" in capsys.readouterr().err
