"""The recommender micro-benchmark runs on a tiny state, and its answer comparison can fail."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.recommend import add_arguments, run


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--items", "400", "--users", "50", "--dim", "16", "--batch", "8",
                              "--batches", "2", *extra])  # fmt: skip


def test_recommend_benchmark_times_each_stage_and_compares_answers(tmp_path: Path) -> None:
    dump, out = tmp_path / "answers.json", tmp_path / "recommend.json"
    result = run(_args("--dump", str(dump), "--out", str(out)))
    assert [r["model"] for r in result["rows"]] == ["default", "checkpoint"]
    for row in result["rows"]:
        assert {"user", "search", "score"} <= set(row["us_per_event"])
    assert json.loads(out.read_text())["benchmark"] == "recommend"
    # The same seed gives the same answers; fewer candidates may not.
    same = run(_args("--compare", str(dump), "--busy-thread"))["compare"]["default"]
    assert same["identical"] == same["answers"] == 24 and same["recall"] == 1.0
    fewer = run(_args("--compare", str(dump), "--candidates", "1"))["compare"]["default"]
    assert fewer["recall"] < 1.0
