"""The issue-15 cost benchmark runs end to end on a tiny catalog and reports every case."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.features import add_arguments, run


def test_features_benchmark_reports_every_case(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "features.json"
    args = parser.parse_args(["--items", "600", "--dim", "16", "--k", "10", "--batch", "4",
                              "--repeats", "1", "--out", str(out)])  # fmt: skip
    result = run(args)
    cases = {(r["kind"], r["filter"]) for r in result["filter"]}
    assert ("flat", "0.1%") in cases and ("hnsw", "exclude 100 ids") in cases
    assert set(result["explain"]) == {"off", "on"}
    for mem in result["memory"]:
        # The estimate is the formula of extra_index_bytes; the measurement is within 2x of it.
        assert 0.5 < mem["bytes"] / mem["estimate_bytes"] < 2.0
    assert json.loads(out.read_text())["benchmark"] == "features"
