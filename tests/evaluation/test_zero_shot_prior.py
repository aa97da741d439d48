"""Mixed zero-shot (vector mean + prompt + freshness) and the text + Pop prior, on tiny data."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from promptrec.encoder import TextEncoder
from promptrec.encoder.features import encode_cached
from promptrec.encoder.prompts import PromptTemplates
from promptrec.evaluation.baselines import TextZeroShotScorer
from promptrec.evaluation.datasets import Dataset, Interaction, ItemRecord
from promptrec.evaluation.protocol import Split, evaluate
from promptrec.evaluation.zero_shot import HistoryPromptScorer
from promptrec.evaluation.zero_shot_prior import (
    FRESH_WEIGHTS,
    POP_WEIGHTS,
    PROMPT_WEIGHTS,
    MixedZeroShotScorer,
    TextPopPriorScorer,
    history_times,
    item_years,
    mixed_ranks,
    select_mixed_zero_shot,
    select_text_pop_prior,
)


def _ms(year: int) -> int:
    return int(datetime.datetime(year, 6, 1, tzinfo=datetime.UTC).timestamp() * 1000)


def test_item_years_from_attributes_then_title() -> None:
    items = [
        ItemRecord("a", "Toy Story (1995)"),
        ItemRecord("b", "No year here"),
        ItemRecord("c", "Old (1950)", attributes={"year": 1997}),  # the attribute wins
        ItemRecord("d", "x", attributes={"release_date": "01-Jan-1988"}),
        ItemRecord("e", "x", attributes={"released": "2001-07-11"}),
        ItemRecord("f", "Heat (1995)", attributes={"year": "unknown"}),  # no year: title
        ItemRecord("g", "Room 12345 (draft)"),  # five digits and no "(YYYY)" suffix: no year
    ]
    years = item_years(items)
    assert years[[0, 2, 3, 4, 5]].tolist() == [1995.0, 1997.0, 1988.0, 2001.0, 1995.0]
    assert np.isnan(years[[1, 6]]).all()


@pytest.fixture
def fresh_data() -> tuple[Dataset, Split]:
    """After one old film every user takes recent releases: 1997/1998, then 1999."""
    items = [ItemRecord(f"i{n}", f"Film {n} ({1990 + n})") for n in range(10)]
    events = []
    for u in range(6):
        for step, n in enumerate([u % 3, 7 + u % 2, 9]):
            events.append(Interaction(f"u{u}", f"i{n}", _ms(1999) + 1000 * (step * 6 + u)))
    events.sort(key=lambda e: e.ts)
    dataset = Dataset("t", "jsonl", items, {}, events)
    return dataset, Split.from_dataset(dataset)


def test_history_times_follow_the_split_sequences(fresh_data: tuple[Dataset, Split]) -> None:
    dataset, split = fresh_data
    times = history_times(dataset, split)
    for u, user in enumerate(split.user_ids):
        mine = [e.ts for e in dataset.interactions if e.user_id == user]
        assert times[u].tolist() == mine
        assert len(split.histories("test")[u]) == len(mine) - 1


def test_freshness_prior_is_exp_of_minus_age_and_zero_where_unknown() -> None:
    years = np.array([1999.0, 1997.0, 2001.0, np.nan])
    times = [np.array([_ms(1999)])]
    vector = TextZeroShotScorer(np.eye(4, 8, dtype=np.float32))
    scorer = MixedZeroShotScorer(vector, None, years, times, fresh_weight=1.0)
    prior = scorer.freshness([0, 0], [[0], []])
    # Released after "now" counts as new (age clipped at 0); unknown year and empty history: 0.
    assert prior[0] == pytest.approx([1.0, np.exp(-2.0), 1.0, 0.0])
    assert np.array_equal(prior[1], np.zeros(4))
    both = scorer.score([0], [[0]])
    assert both == pytest.approx(vector.score([0], [[0]]) + prior[:1])


def test_mixed_selection_takes_the_freshness_when_validation_asks_for_it(
    fresh_data: tuple[Dataset, Split],
) -> None:
    dataset, split = fresh_data
    # Random text: only the release year knows that the 1999 item comes next.
    text = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32)
    vector = TextZeroShotScorer(text / np.linalg.norm(text, axis=1, keepdims=True))
    years, times = item_years(dataset.items), history_times(dataset, split)
    # A weight large enough to outvote random cosines (in [-1, 1]).
    scorer, grid = select_mixed_zero_shot(split, vector, None, years, times, fresh_weights=(0, 10))
    assert list(grid) == ["prompt=0.0/fresh=0", "prompt=0.0/fresh=10"]  # no prompt scorer
    assert scorer.fresh_weight == 10
    assert evaluate(scorer, split, "test")["NDCG@10"] > evaluate(vector, split, "test")["NDCG@10"]
    assert max(grid.values()) == pytest.approx(
        evaluate(scorer, split, "valid")["NDCG@10"], abs=1e-5
    )
    _, no_years = select_mixed_zero_shot(split, vector, None, np.full(10, np.nan), times)
    assert list(no_years) == ["prompt=0.0/fresh=0.0"]  # no catalog year: the prior is off


def test_mixed_row_with_the_real_encoder_records_its_grid(
    minilm: TextEncoder, fresh_data: tuple[Dataset, Split]
) -> None:
    dataset, split = fresh_data
    titles = [item.title for item in dataset.items]
    text = encode_cached(minilm, [f"Item: {t}." for t in titles], None, progress=False)
    vector = TextZeroShotScorer(text)
    prompt = HistoryPromptScorer(
        minilm, PromptTemplates.default(), "user_liked", text, titles, [None] * 6, 5
    )
    out: dict[str, object] = {}
    ranks = mixed_ranks(dataset, split, vector, prompt, out)
    record = out["zero_shot_mixed"]
    assert isinstance(record, dict)
    assert len(record["valid_ndcg10_grid"]) == len(PROMPT_WEIGHTS) * len(FRESH_WEIGHTS)
    assert record["items_with_year"] == 10 and record["chosen_on"] == "valid"
    assert ranks.shape == (6,) and (ranks >= 0).all()


def test_text_pop_prior_scales_counts_and_rejects_unknown_forms() -> None:
    vector = TextZeroShotScorer(np.eye(3, 4, dtype=np.float32))
    counts = np.array([0.0, 3.0, 9.0])
    assert TextPopPriorScorer(vector, counts, "linear", 1.0).prior == pytest.approx(
        [0.0, 1 / 3, 1.0]
    )
    log = TextPopPriorScorer(vector, counts, "log", 1.0).prior
    assert log == pytest.approx(np.log1p(counts) / np.log1p(9.0))
    with pytest.raises(ValueError, match="unknown popularity prior form 'sqrt'"):
        TextPopPriorScorer(vector, counts, "sqrt", 1.0)


def test_text_pop_prior_selection_follows_popularity() -> None:
    # Users 0-3 train on [7, 8] and validate on 0; users 4-7 train on [0, 8] and validate on 7:
    # each validation target is the one unseen item with training interactions, which random
    # text does not know.
    items = [ItemRecord(f"i{n}", f"item {n}") for n in range(10)]
    seqs = [[7, 8, 0, 5]] * 4 + [[0, 8, 7, 6]] * 4
    events = [
        Interaction(f"u{u}", f"i{n}", 1000 * (step * 8 + u))
        for u, seq in enumerate(seqs)
        for step, n in enumerate(seq)
    ]
    split = Split.from_dataset(Dataset("t", "jsonl", items, {}, sorted(events, key=lambda e: e.ts)))
    text = np.random.default_rng(1).normal(size=(10, 16)).astype(np.float32)
    vector = TextZeroShotScorer(text / np.linalg.norm(text, axis=1, keepdims=True))
    assert evaluate(vector, split, "valid")["NDCG@10"] < 1.0
    scorer, grid = select_text_pop_prior(split, vector)
    assert set(grid) == {f"{f}/weight={w}" for f in ("linear", "log") for w in POP_WEIGHTS}
    assert max(grid.values()) == 1.0
    assert evaluate(scorer, split, "valid")["NDCG@10"] == 1.0
