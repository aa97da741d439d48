"""Experiments: config checks, stable assignment, minimal movement on weight changes, grouping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptrec.encoder import PromptTemplates
from promptrec.encoder.settings import EncoderSettings
from promptrec.serving.experiments import (
    BUCKETS,
    ExperimentError,
    Experiments,
    IndexKey,
    bucket_of,
    extra_index_bytes,
)
from promptrec.serving.settings import ServingSettings

PROMPTS = PromptTemplates.default()
USERS = [f"user-{n}" for n in range(40_000)]
EXAMPLE = {
    "experiment": "prompt-test-1",
    "arms": [
        {"name": "control", "weight": 50},
        {"name": "short-prompt", "weight": 50, "item_prompt": "item_short", "user_prompt": "user",
         "checkpoint": None},
    ],
}  # fmt: skip


def load(tmp_path: Path, config: Any, checkpoint: Path | None = None) -> Experiments:
    path = tmp_path / "experiments.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return Experiments.load(path, PROMPTS, "item", "user", checkpoint)


def weights(*pairs: tuple[str, float]) -> dict[str, Any]:
    return {"experiment": "e", "arms": [{"name": n, "weight": w} for n, w in pairs]}


def test_without_a_file_there_is_one_default_arm() -> None:
    ex = Experiments.load(None, PROMPTS, "item", "user", None)
    assert [a.name for a in ex.arms] == ["default"] and not ex.active
    assert {a.name for a in ex.assign_many(USERS[:100])} == {"default"}
    assert ex.index_keys() == {"default": IndexKey("item", None)}


def test_the_example_file_and_defaults(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"x")
    ex = load(tmp_path, EXAMPLE, checkpoint=ckpt)
    control, short = ex.arms
    assert (control.item_prompt, control.user_prompt, control.checkpoint) == ("item", "user", ckpt)
    assert (short.item_prompt, short.checkpoint) == ("item_short", None)  # null: no checkpoint
    assert (control.start, control.end, short.start, short.end) == (0, 5000, 5000, BUCKETS)
    assert ex.active and ex.arm("short-prompt") is short


def test_assignment_is_stable_and_follows_the_weights(tmp_path: Path) -> None:
    assert bucket_of("prompt-test-1", "user-001") == 2590  # blake2b: same on every process
    assert bucket_of("prompt-test-1", "u42") == 1281
    ex = load(tmp_path, weights(("a", 20), ("b", 30.5), ("c", 49.5)))
    again = load(tmp_path, weights(("a", 20), ("b", 30.5), ("c", 49.5)))
    arms = [a.name for a in ex.assign_many(USERS)]
    assert arms == [a.name for a in again.assign_many(USERS)]
    for name, share in (("a", 0.20), ("b", 0.305), ("c", 0.495)):
        assert arms.count(name) / len(USERS) == pytest.approx(share, abs=0.01)  # 4 sigma
    other = load(tmp_path, {**weights(("a", 20), ("b", 30.5), ("c", 49.5)), "experiment": "f"})
    moved = sum(x != y.name for x, y in zip(arms, other.assign_many(USERS), strict=True))
    assert moved / len(USERS) > 0.5  # a new experiment name reshuffles


def moves(before: Experiments, after: Experiments) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for a, b in zip(before.assign_many(USERS), after.assign_many(USERS), strict=True):
        if a.name != b.name:
            out[a.name, b.name] = out.get((a.name, b.name), 0) + 1
    return out


def test_a_weight_change_moves_only_the_users_it_must(tmp_path: Path) -> None:
    old = load(tmp_path, weights(("a", 50), ("b", 50)))
    new = load(tmp_path, weights(("a", 60), ("b", 40)))
    between = sum(5000 <= old.bucket(u) < 6000 for u in USERS)
    assert moves(old, new) == {("b", "a"): between}  # exactly the buckets between the boundaries
    assert between / len(USERS) == pytest.approx(0.10, abs=0.006)  # 10% = |change|, the minimum
    # A new arm appended with the last arm's weight: only that arm's users move, 20 of its 50%.
    three = load(tmp_path, weights(("a", 50), ("b", 30), ("c", 20)))
    got = moves(old, three)
    assert set(got) == {("b", "c")} and got["b", "c"] / len(USERS) == pytest.approx(0.2, abs=0.01)
    # Draining an arm in place (weight 0) keeps the other boundaries.
    drained = load(tmp_path, weights(("a", 50), ("b", 0), ("c", 50)))
    assert set(moves(three, drained)) == {("b", "c")}


def test_non_adjacent_changes_move_more_than_the_minimum(tmp_path: Path) -> None:
    # The documented limit of a stateless range layout: 50/25/25 -> 25/25/50 shifts both
    # boundaries by 25 points, so 50% move although 25% would do; neighbours first avoids it.
    old = load(tmp_path, weights(("a", 50), ("b", 25), ("c", 25)))
    new = load(tmp_path, weights(("a", 25), ("b", 25), ("c", 50)))
    got = moves(old, new)
    assert set(got) == {("a", "b"), ("b", "c")}
    assert sum(got.values()) / len(USERS) == pytest.approx(0.5, abs=0.01)


def test_arms_group_by_item_template_and_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "m.safetensors").write_bytes(b"x")
    config = {"experiment": "g", "arms": [
        {"name": "a", "weight": 40, "checkpoint": "ckpt/m.safetensors"},
        {"name": "b", "weight": 30, "item_prompt": "item_short"},
        {"name": "c", "weight": 30, "checkpoint": "ckpt/m.safetensors", "user_prompt": "user_history"},
    ]}  # fmt: skip
    ex = load(tmp_path, config)
    ckpt = tmp_path / "ckpt" / "m.safetensors"  # relative to the experiments file
    assert ex.index_keys() == {
        "a": IndexKey("item", ckpt),
        "b": IndexKey("item_short", None),
        "c": IndexKey("item", ckpt),
    }
    assert ex.indexes() == [IndexKey("item", ckpt), IndexKey("item_short", None)]
    assert ex.user_prompts() == ["user", "user_history"]


BAD: list[tuple[str, Any, str]] = [
    ("not json", "{arms", "cannot read JSON"),
    ("not an object", "[1]", "must be a JSON object"),
    ("unknown top key", {**weights(("a", 100)), "arm": []}, "unknown key(s) 'arm'"),
    ("no arms", {"experiment": "e", "arms": []}, "arms must be a non-empty list"),
    ("bad experiment name", {**weights(("a", 100)), "experiment": "has space"}, "experiment must be"),
    ("arm not an object", {"experiment": "e", "arms": ["a"]}, "arms[0] must be an object"),
    ("unknown arm key", {"experiment": "e", "arms": [{"name": "a", "weight": 100, "prompt": "x"}]},
     "arms[0]: unknown key(s) 'prompt'"),
    ("missing name", {"experiment": "e", "arms": [{"weight": 100}]}, "arms[0].name must be"),
    ("duplicate names", weights(("a", 50), ("a", 50)), "duplicate arm name 'a'"),
    ("sum below 100", weights(("a", 50), ("b", 40)), "weights must sum to 100, got 90 (a=50, b=40)"),
    ("sum above 100", weights(("a", 70), ("b", 40)), "must sum to 100, got 110"),
    ("negative weight", weights(("a", 100), ("b", -0.5)), "arm 'b': weight must be a percentage"),
    ("weight above 100", weights(("a", 101)), "arm 'a': weight must be a percentage"),
    ("too fine", weights(("a", 33.333), ("b", 66.667)), "at most 2 decimals"),
    ("weight string", weights(("a", "100")), "weight must be a number"),  # type: ignore[arg-type]
    ("weight bool", weights(("a", True)), "weight must be a number"),
    ("missing weight", {"experiment": "e", "arms": [{"name": "a"}]}, "weight must be a number"),
    ("unknown template", {"experiment": "e", "arms": [{"name": "a", "weight": 100, "item_prompt": "itme"}]},
     "unknown item_prompt template 'itme'; known: item, item_attributes"),
    ("unknown user template", {"experiment": "e", "arms": [{"name": "a", "weight": 100, "user_prompt": 3}]},
     "unknown user_prompt template 3"),
    ("missing checkpoint", {"experiment": "e", "arms": [{"name": "a", "weight": 100, "checkpoint": "no.pt"}]},
     "checkpoint file"),
    ("checkpoint number", {"experiment": "e", "arms": [{"name": "a", "weight": 100, "checkpoint": 1}]},
     "checkpoint must be a path or null"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_are_refused_with_the_problem_named(
    tmp_path: Path, config: Any, message: str
) -> None:
    with pytest.raises(ExperimentError) as info:
        load(tmp_path, config)
    assert message in str(info.value) and "experiments.json" in str(info.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="cannot read JSON"):
        Experiments.load(tmp_path / "nope.json", PROMPTS, "item", "user", None)


def test_setting_and_memory_estimate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text(json.dumps(EXAMPLE))
    monkeypatch.setenv("PROMPTREC_EXPERIMENTS_FILE", str(tmp_path / "e.json"))
    assert ServingSettings().experiments_file == tmp_path / "e.json"
    ex = Experiments.from_settings(
        ServingSettings(), EncoderSettings(item_prompt="item_title"), PROMPTS
    )
    assert [a.item_prompt for a in ex.arms] == ["item_title", "item_short"]
    none = Experiments.from_settings(
        ServingSettings(experiments_file=None), EncoderSettings(), PROMPTS
    )
    assert not none.active
    # flat: 4 * 384 + 600 bytes per item; hnsw adds 4 * 384 + 8 * 32 + 16; head: 3 x float32.
    assert extra_index_bytes(1000, 384, "flat") == 1000 * 2136
    assert extra_index_bytes(1000, 384, "hnsw", 32, head_params=10) == 1000 * 3944 + 120
