"""The encoder, pipeline and freshness benchmarks end to end, at tiny sizes with the tiny model.

These check the structure of the JSON output and that the counts are consistent (every event
sent gets exactly one recommendation); they assert nothing about speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptrec.cli.main import main


def test_encoder_bench_tiny(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "encoder.json"
    code = main([
        "bench", "encoder", "--texts", "48", "--batch-sizes", "8,32", "--devices", "cpu",
        "--model-dir", str(tiny_model_dir), "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "encoder" and doc["example_text"].startswith("Item: ")
    assert [p["batch_size"] for p in doc["points"]] == [8, 32]
    for p in doc["points"]:
        assert p["device"] == "cpu" and p["texts"] == 48 and p["seconds"] > 0
        assert p["texts_per_s"] == pytest.approx(p["texts"] / p["seconds"])


@pytest.mark.integration
@pytest.mark.slow
def test_pipeline_bench_tiny(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    code = main([
        "bench", "pipeline", "--items", "60", "--users", "20", "--events", "300",
        "--rate", "MAX,300", "--partitions", "2", "--model-dir", str(tiny_model_dir),
        "--idle-timeout", "20", "--ramp", "0.2", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["catalog"]["items"] == 60 and doc["catalog"]["user_profiles"] == 20
    assert [r["rate"] for r in doc["runs"]] == ["MAX", 300.0]
    for r in doc["runs"]:
        assert r["events_sent"] == 300
        assert r["recommendations"] == 300 and r["missing"] == 0
        assert r["duplicate_recommendations"] == 0
        lat = r["latency_ms"]
        assert lat["n"] == 300 and 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
        assert r["worker_cpu_s"] > 0
        # 300 recommendations came within the run, so the rate is at least 300 per (run + slack).
        per_event = r["worker_cpu_ms_per_event"]
        assert per_event == pytest.approx(1000.0 * r["worker_cpu_s"] / r["recommendations"])
        assert r["throughput_eps"] >= 1.0
        assert 0 < r["worker_rss_mb"]["final"] <= r["worker_rss_mb"]["peak"]
        assert r["worker_stages"]["batches"]["recommend"]["events"] >= 300
        assert r["steady_latency_ms"]["n"] <= lat["n"]
    # The floor ran once, on the MAX run's very events, and copied each one.
    max_run, paced = doc["runs"]
    assert max_run["floor"]["events"] == 300 and "floor" not in paced
    assert doc["floor_events_per_s"] == max_run["floor"]["events_per_s"] > 0
    assert doc["ratio_to_floor"] == pytest.approx(
        max_run["throughput_eps"] / doc["floor_events_per_s"]
    )
    assert max_run["keeps_up"] is None and isinstance(paced["keeps_up"], bool)
    assert "ratio_to_floor" not in paced
    # A paced stream's steady part: the events sent after its first 0.2 s.
    steady = paced["steady_latency_ms"]
    assert 0 < steady["n"] < 300 and steady["max"] <= paced["latency_ms"]["max"]


@pytest.mark.integration
@pytest.mark.slow
def test_pipeline_bench_burst_tiny(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "burst.json"
    code = main([
        "bench", "pipeline", "--items", "40", "--users", "10", "--no-profiles", "--no-floor",
        "--rate", "MAX,40", "--events", "100", "--duration", "12", "--burst-items", "30",
        "--burst-after", "1", "--partitions", "2", "--model-dir", str(tiny_model_dir),
        "--idle-timeout", "20", "--ramp", "0.2", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    max_run, paced = doc["runs"]
    assert max_run["burst"] is None  # bursts go into paced streams only
    burst = paced["burst"]
    assert burst["items"] == 30 and burst["applied"] is True and burst["error"] is None
    assert burst["encode_s"] > 0 and burst["texts_per_s"] == pytest.approx(30 / burst["encode_s"])
    assert paced["recommendations"] == paced["events_sent"] == 480  # 40/s for 12 s
    during = burst["latency_during_ms"]
    assert 0 < during["n"] <= paced["latency_ms"]["n"]
    assert during["max"] <= paced["latency_ms"]["max"]


@pytest.mark.integration
@pytest.mark.slow
def test_freshness_bench_tiny(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "freshness.json"
    code = main([
        "bench", "freshness", "--items", "60", "--users", "20", "--rate", "100",
        "--trials", "3", "--gap", "0.2", "--partitions", "2",
        "--model-dir", str(tiny_model_dir), "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["missed"] == 0 and doc["freshness_s"]["n"] == 3
    assert 0 < doc["freshness_s"]["p50"] <= doc["freshness_s"]["max"] < 15
    assert doc["background_latency_ms"]["n"] > 0
