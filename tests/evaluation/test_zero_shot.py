"""The history-prompt zero-shot method: prompt rendering, scoring with the real encoder."""

from __future__ import annotations

import numpy as np
import pytest

from promptrec.encoder import TextEncoder
from promptrec.encoder.exceptions import PromptError
from promptrec.encoder.features import encode_cached
from promptrec.encoder.prompts import PromptTemplates
from promptrec.evaluation.datasets import Dataset, Interaction, ItemRecord
from promptrec.evaluation.protocol import Split, evaluate
from promptrec.evaluation.zero_shot import (
    HISTORY_TEMPLATES,
    HistoryPromptScorer,
    history_prompts,
    select_history_prompt,
)

TITLES = [
    "Jazz piano trio album", "Jazz saxophone quartet album", "Jazz trumpet ballads album",
    "Italian pasta cookbook", "French pastry baking cookbook", "Vegan curry cookbook",
    "Mountain hiking boots", "Trail running backpack", "Camping tent for two",
    "Telescope for stargazing", "Astronomy guide to the planets", "Star map of the night sky",
]  # fmt: skip


def test_history_prompts_name_the_newest_titles_first() -> None:
    prompts = PromptTemplates.default()
    assert set(HISTORY_TEMPLATES) <= set(prompts.names)  # shipped in prompts.json
    titles = ["A", "B", "C", "D"]
    out = history_prompts(
        prompts, "user_liked", titles, [[0, 1, 2, 3], [], [2]], [None, None, None], recent=2
    )
    assert out == ["A user who liked D, C.", "", "A user who liked C."]
    (with_profile,) = history_prompts(
        prompts, "user_history", titles, [[1]], [{"age": "24"}], recent=5
    )
    assert with_profile == "A user who recently liked: B. Profile: age: 24."


@pytest.fixture(scope="module")
def topics() -> tuple[Split, list[str]]:
    items = [ItemRecord(f"i{n}", t) for n, t in enumerate(TITLES)]
    events = []
    for u in range(8):  # every user likes two items of one topic; the third is the target
        topic = u % 4
        for step, n in enumerate([0, 1, 2] if u < 4 else [1, 2, 0]):
            events.append(Interaction(f"u{u}", f"i{3 * topic + n}", 1000 * (step * 8 + u)))
    events.sort(key=lambda e: e.ts)
    return Split.from_dataset(Dataset("t", "jsonl", items, {}, events)), TITLES


def test_zero_shot_prompt_finds_the_topic_with_the_real_encoder(
    minilm: TextEncoder, topics: tuple[Split, list[str]]
) -> None:
    split, titles = topics
    prompts = PromptTemplates.default()
    text = encode_cached(minilm, [f"Item: {t}." for t in titles], None, progress=False)
    scorer = HistoryPromptScorer(minilm, prompts, "user_liked", text, titles, [None] * 8, 10)
    test = evaluate(scorer, split, "test")
    # The two remaining items of the user's topic share its words: the target is in the top 2
    # of the 10 unseen items for (almost) every user; Pop-like chance would be 0.2.
    assert test["HR@5"] == 1.0
    assert test["NDCG@10"] > 0.7
    best, grid = select_history_prompt(
        split, minilm, prompts, text, titles, [None] * 8, recent_grid=(1, 5)
    )
    assert set(grid) == {f"{t}/recent={r}" for t in HISTORY_TEMPLATES for r in (1, 5)}
    assert max(grid.values()) == pytest.approx(evaluate(best, split, "valid")["NDCG@10"], abs=1e-5)
    with pytest.raises(PromptError, match="unknown prompt template"):
        select_history_prompt(split, minilm, prompts, text, titles, [None] * 8, templates=["x"])


def test_empty_histories_score_zero(minilm: TextEncoder) -> None:
    text = np.eye(3, 384, dtype=np.float32)
    scorer = HistoryPromptScorer(
        minilm, PromptTemplates.default(), "user_liked", text, ["a", "b", "c"], [None]
    )
    assert np.array_equal(scorer.score([0], [[]]), np.zeros((1, 3), dtype=np.float32))
