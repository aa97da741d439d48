"""``promptrec bench state``: the figures behind the capacity plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.state import history_bytes
from promptrec.cli.main import main


def test_history_bytes_grow_with_the_cap_and_stop_there() -> None:
    small, large = history_bytes(5), history_bytes(50)
    # Every bounded list holds about 10x more entries at the larger cap.
    assert 8 * small < large < 12 * small


def test_state_bench_tiny(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    argv = ["bench", "state", "--items", "2000", "--dim", "16", "--history-len", "5"]
    assert main([*argv, "--kinds", "flat", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert (
        doc["history_bytes"] == history_bytes(5)
        or abs(doc["history_bytes"] - history_bytes(5)) < 64
    )
    (flat,) = doc["index"]
    assert flat["kind"] == "flat" and flat["items"] == 2000 and flat["vector_bytes"] == 64
    # The snapshot holds at least the float32 vectors.
    assert flat["snapshot_bytes_per_item"] >= 64


@pytest.mark.parametrize("value", ["0", "-3", "lots", ""])
def test_state_bench_rejects_garbage(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "state", "--items", value]) == 2
    assert "whole number >= 1" in capsys.readouterr().err
