"""``promptrec eval ab``: intervals, simulated future clicks, and a real two-arm replay."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from promptrec.cli.main import main
from promptrec.evaluation.ab import FutureClicks, newcombe, wilson
from promptrec.evaluation.datasets import Interaction
from tests.encoder.test_training import topic_dataset

TWO_ARMS = {
    "experiment": "ab-test",
    "arms": [
        {"name": "control", "weight": 50},
        {"name": "short", "weight": 50, "item_prompt": "item_short"},
    ],
}


def test_wilson_matches_known_values() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson(0, 0) == (0.0, 1.0)


def test_newcombe_difference_interval() -> None:
    d, low, high = newcombe(5, 10, 5, 10)
    assert d == 0.0 and low == pytest.approx(-high) and 0.3 < high < 0.5
    # Newcombe (1998), example (56/70 vs 48/80): 0.2000, [0.0524, 0.3339].
    d, low, high = newcombe(56, 70, 48, 80)
    assert (d, low, high) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)


def _rec(user: str, source: str, items: list[str], arm: str, rec_id: str) -> Any:
    return SimpleNamespace(
        recommendation_id=rec_id,
        user_id=user,
        source_event_id=source,
        source_ts=5,
        arm=arm,
        items=[SimpleNamespace(item_id=i) for i in items],
    )


def test_future_clicks_count_only_later_interactions_and_publish_feedback() -> None:
    events = [Interaction("u", "a", 1), Interaction("v", "x", 2), Interaction("u", "b", 3),
              Interaction("u", "c", 4)]  # fmt: skip
    sent: list[tuple[str, dict[str, Any]]] = []
    clicks = FutureClicks(events, lambda key, value: sent.append((key, value)))
    # Answer to the request before u's first event (index 0): a, b, c are all in the future.
    clicks(_rec("u", "r-0", ["b", "z", "a"], "control", "rec-1"))
    # Answer to u's event 2 ("b"): only "c" (index 3) is later; "a" and "b" are past.
    clicks(_rec("u", "e-2", ["a", "b", "y"], "short", "rec-2"))
    clicks(_rec("u", "e-2", ["a", "b", "y"], "short", "rec-2"))  # a redelivered duplicate
    clicks(_rec("u", "e-3", ["a"], "short", "rec-3"))  # u's last event: nothing left to click
    report = clicks.report(["control", "short"])
    control, short = report["arms"]["control"], report["arms"]["short"]
    assert control["recommendations"] == 1 and control["clicks"] == 2
    assert control["clicked_recommendations"] == 1 and control["HR@10"] == 1.0  # next is "a"
    assert short["recommendations"] == 2 and short["clicks"] == 0
    assert short["HR@10"] == 0.0 and short["eligible_recommendations"] == 1  # next: "c"
    labels = [(v["recommendation_id"], v["item_id"], v["label"]) for _, v in sent]
    assert labels == [("rec-1", "b", 1), ("rec-1", "a", 1), ("rec-1", "z", 0),
                      ("rec-2", "a", 0)]  # fmt: skip
    assert {key for key, _ in sent} == {"u"}
    assert len({v["event_id"] for _, v in sent}) == len(sent)
    (diff,) = report["differences"]
    assert diff["arm"] == "short" and diff["versus"] == "control"
    assert diff["CTR_diff"] == -1.0 and diff["CTR_diff_95"][0] < -0.1 < diff["CTR_diff_95"][1]


def _write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "experiments.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"experiment": "x", "arms": [{"name": "only", "weight": 100}]}, "two or more arms"),
        ({"experiment": "x", "arms": [{"name": "a", "weight": 50}]}, "weights must sum to 100"),
        ("[1, 2", "cannot read JSON"),
    ],
)
def test_bad_experiments_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object, message: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = _write(tmp_path, content)
    code = main(["eval", "ab", "--data", str(data), "--format", "jsonl", "--experiments",
                 str(path), "--out", str(tmp_path / "ab.json"), "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("promptrec eval ab: error: ") and message in err[0]
    missing = main(["eval", "ab", "--data", str(data), "--format", "jsonl", "--experiments",
                    str(tmp_path / "nope.json"), "--out", str(tmp_path / "ab.json")])  # fmt: skip
    assert missing == 2 and "no such file" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_eval_ab_replays_through_a_two_arm_worker(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptrec.evaluation.datasets import write_jsonl

    data = tmp_path / "data"
    write_jsonl(topic_dataset(n_users=12), data)
    out = tmp_path / "ab.json"
    code = main(["eval", "ab", "--data", str(data), "--format", "jsonl", "--experiments",
                 str(_write(tmp_path, TWO_ARMS)), "--out", str(out), "--model-dir",
                 str(tiny_model_dir), "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    arms = results["arms"]
    assert set(arms) == {"control", "short"} and results["experiment"] == "ab-test"
    # 12 users x (1 request + 6 interactions) answers; the replay waits for all but the answers
    # to each user's last event (which nothing can follow), and every one names its arm.
    assert 12 * 6 <= sum(a["recommendations"] for a in arms.values()) <= 12 * 7
    assert sum(a["eligible_recommendations"] for a in arms.values()) == 12 * 6
    assert results["events"] == 12 * 6
    for a in arms.values():
        assert a["recommendations"] > 0
        assert 0.0 <= a["CTR_95"][0] <= a["CTR"] <= a["CTR_95"][1] <= 1.0
        assert 0.0 <= a["HR@10_95"][0] <= a["HR@10"] <= a["HR@10_95"][1] <= 1.0
        # A user's 6 events hit a catalog of 32 items: some recommendation gets clicked.
        assert a["clicked_recommendations"] > 0
    (diff,) = results["differences"]
    assert diff["arm"] == "short" and diff["versus"] == "control"
    low, high = diff["CTR_diff_95"]
    assert low <= diff["CTR_diff"] <= high
    table = capsys.readouterr().out
    assert "control" in table and "short - control: CTR" in table
