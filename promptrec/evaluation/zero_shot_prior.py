"""Mixed zero-shot (vector mean + user prompt + release-year freshness) and text + Pop prior.

Two rows of ``eval offline``, both built from the already chosen text scorers:

* ``promptrec-zero-shot-mixed`` (zero-shot: nothing trained, no interaction counted): the sum of
  the vector-mean cosine (:class:`~promptrec.evaluation.baselines.TextZeroShotScorer`), the
  user-prompt cosine (:class:`~promptrec.evaluation.zero_shot.HistoryPromptScorer`) times
  ``prompt_weight``, and a freshness prior times ``fresh_weight``: ``exp(-age)`` with ``age``
  the years between an item's release year (catalog metadata, :func:`item_years`) and the year
  of the user's newest history interaction (clipped at 0; unknown year: no prior). The two
  weights are chosen on the validation targets from :data:`PROMPT_WEIGHTS` x
  :data:`FRESH_WEIGHTS` (weight 0 included, so the plain vector mean is a candidate).
* ``promptrec-text-pop-prior`` (NOT zero-shot: the prior is the training-interaction count of
  :class:`~promptrec.evaluation.baselines.PopScorer`): vector-mean cosine plus ``weight`` times
  the count scaled to [0, 1] (``linear``: ``c / max c``; ``log``: ``log1p(c) / log1p(max c)``),
  form and weight chosen on validation. It shows whether text adds anything to popularity.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptrec.evaluation.datasets import Dataset, ItemRecord
from promptrec.evaluation.protocol import Scorer, Split, evaluate, stage_ranks
from promptrec.evaluation.zero_shot import HistoryPromptScorer

__all__ = [
    "FRESH_WEIGHTS",
    "POP_FORMS",
    "POP_WEIGHTS",
    "PROMPT_WEIGHTS",
    "YEAR_ATTRIBUTES",
    "MixedZeroShotScorer",
    "TextPopPriorScorer",
    "grid_record",
    "history_times",
    "item_years",
    "mixed_ranks",
    "pop_prior_ranks",
    "select_mixed_zero_shot",
    "select_text_pop_prior",
]

PROMPT_WEIGHTS = (0.0, 0.5, 1.0)
FRESH_WEIGHTS = (0.0, 0.05, 0.1)
POP_FORMS = ("linear", "log")
POP_WEIGHTS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
YEAR_ATTRIBUTES = ("year", "release_year", "release_date", "released")
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|2\d\d\d)(?!\d)")
_TITLE_YEAR = re.compile(r"\((1[89]\d\d|2\d\d\d)\)\s*$")  # "Toy Story (1995)"
_MS_PER_S = 1000.0


def item_years(items: Sequence[ItemRecord]) -> np.ndarray:
    """``(n_items,)`` release year per item (NaN: unknown), from catalog metadata only.

    The first of :data:`YEAR_ATTRIBUTES` holding a four-digit year wins (a number, or a date
    string in any format that names the year); else a title ending in ``(YYYY)``.
    """
    out = np.full(len(items), np.nan)
    for row, item in enumerate(items):
        for name in YEAR_ATTRIBUTES:
            match = _YEAR.search(str(item.attributes.get(name, "")))
            if match:
                out[row] = float(match.group(1))
                break
        else:
            title = _TITLE_YEAR.search(item.title)
            if title:
                out[row] = float(title.group(1))
    return out


def history_times(dataset: Dataset, split: Split) -> list[np.ndarray]:
    """Per user row of ``split``, the interaction times (epoch ms) of its whole sequence.

    ``split.histories(stage)[u]`` is a prefix of that sequence (the same order as
    :meth:`Dataset.sequences`), so its newest time is ``times[u][len(history) - 1]``.
    """
    times: dict[str, list[int]] = {}
    for event in dataset.interactions:
        times.setdefault(event.user_id, []).append(event.ts)
    return [np.asarray(times.get(user, []), dtype=np.int64) for user in split.user_ids]


def _year_of(ts_ms: int) -> float:
    moment = datetime.datetime.fromtimestamp(ts_ms / _MS_PER_S, tz=datetime.UTC)
    return float(moment.year)


class MixedZeroShotScorer:
    """Vector-mean cosine + ``prompt_weight`` x prompt cosine + ``fresh_weight`` x freshness.

    Args:
        vector: The vector-mean text scorer.
        prompt: The user-prompt scorer (None: no prompt term).
        years: ``(n_items,)`` release years (NaN: unknown, no prior for that item).
        times: Per user row, its sequence's interaction times (:func:`history_times`).
        prompt_weight: Weight of the prompt cosine.
        fresh_weight: Weight of the freshness prior ``exp(-max(now_year - year, 0))``.
    """

    def __init__(
        self,
        vector: Scorer,
        prompt: Scorer | None,
        years: np.ndarray,
        times: Sequence[np.ndarray],
        prompt_weight: float = 0.0,
        fresh_weight: float = 0.0,
    ) -> None:
        self.vector, self.prompt, self.times = vector, prompt, times
        self.years = np.asarray(years, dtype=np.float64)
        self.prompt_weight, self.fresh_weight = prompt_weight, fresh_weight

    def freshness(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` prior in [0, 1]; zero rows for empty histories, zero unknown years."""
        now = np.full(len(users), np.nan)
        for i, (user, hist) in enumerate(zip(users, histories, strict=True)):
            if len(hist):
                now[i] = _year_of(int(self.times[int(user)][len(hist) - 1]))
        age = np.maximum(now[:, None] - self.years[None, :], 0.0)  # (b, n_items), NaN: unknown
        return np.nan_to_num(np.exp(-age), nan=0.0)

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` summed scores."""
        out = np.asarray(self.vector.score(users, histories), dtype=np.float64)
        if self.prompt is not None and self.prompt_weight:
            out = out + self.prompt_weight * self.prompt.score(users, histories)
        if self.fresh_weight:
            out = out + self.fresh_weight * self.freshness(users, histories)
        return out


class _PromptMemo:
    """Remembers the encoded user prompts of each batch: a weight grid encodes them once.

    Only the ``(b, dim)`` user vectors are kept (not ``(b, n_items)`` scores), so the memory is
    that of one vector per evaluated user whatever the catalog size.
    """

    def __init__(self, scorer: HistoryPromptScorer) -> None:
        self.scorer = scorer
        self.seen: dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray] = {}

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        key = (tuple(int(u) for u in users), tuple(len(h) for h in histories))
        if key not in self.seen:
            self.seen[key] = self.scorer.user_vectors(users, histories)
        return self.seen[key] @ self.scorer.items.T


def select_mixed_zero_shot(
    split: Split,
    vector: Scorer,
    prompt: HistoryPromptScorer | None,
    years: np.ndarray,
    times: Sequence[np.ndarray],
    prompt_weights: Sequence[float] = PROMPT_WEIGHTS,
    fresh_weights: Sequence[float] = FRESH_WEIGHTS,
) -> tuple[MixedZeroShotScorer, dict[str, float]]:
    """The (prompt, freshness) weights with the best validation NDCG@10, and the whole grid.

    Without a prompt scorer only prompt weight 0 is tried; without any known year only
    freshness weight 0. The encoded user prompts are memoised per validation batch, so the grid
    encodes them once; the memo is not part of the returned scorer.
    """
    p_grid = list(prompt_weights) if prompt is not None else [0.0]
    f_grid = list(fresh_weights) if np.isfinite(years).any() else [0.0]
    memo = _PromptMemo(prompt) if prompt is not None else None
    grid: dict[str, float] = {}
    best: tuple[float, float, float] | None = None
    for pw in p_grid:
        for fw in f_grid:
            trial = MixedZeroShotScorer(vector, memo, years, times, pw, fw)
            ndcg = evaluate(trial, split, "valid", batch_size=4096)["NDCG@10"]
            grid[f"prompt={pw}/fresh={fw}"] = round(ndcg, 5)
            if best is None or ndcg > best[0]:
                best = (ndcg, pw, fw)
    assert best is not None
    return MixedZeroShotScorer(vector, prompt, years, times, best[1], best[2]), grid


class TextPopPriorScorer:
    """Vector-mean cosine + ``weight`` x training popularity scaled to [0, 1] (not zero-shot).

    Args:
        vector: The vector-mean text scorer.
        counts: ``(n_items,)`` training-interaction counts.
        form: ``linear`` or ``log`` scaling of the counts.
        weight: Weight of the prior.

    Raises:
        ValueError: An unknown ``form``.
    """

    def __init__(self, vector: Scorer, counts: np.ndarray, form: str, weight: float) -> None:
        counts = np.asarray(counts, dtype=np.float64)
        top = max(float(counts.max(initial=0.0)), 1.0)
        if form == "linear":
            self.prior = counts / top
        elif form == "log":
            self.prior = np.log1p(counts) / np.log1p(top)
        else:
            raise ValueError(f"unknown popularity prior form {form!r} ({', '.join(POP_FORMS)})")
        self.vector, self.form, self.weight = vector, form, weight

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)``: cosine + weight x prior (the prior is the same for every user)."""
        return np.asarray(self.vector.score(users, histories)) + self.weight * self.prior[None, :]


def select_text_pop_prior(
    split: Split,
    vector: Scorer,
    forms: Sequence[str] = POP_FORMS,
    weights: Sequence[float] = POP_WEIGHTS,
) -> tuple[TextPopPriorScorer, dict[str, float]]:
    """The (form, weight) with the best validation NDCG@10, and the whole grid."""
    counts = split.train_counts()
    grid: dict[str, float] = {}
    best: tuple[float, str, float] | None = None
    for form in forms:
        for weight in weights:
            trial = TextPopPriorScorer(vector, counts, form, weight)
            ndcg = evaluate(trial, split, "valid", batch_size=4096)["NDCG@10"]
            grid[f"{form}/weight={weight}"] = round(ndcg, 5)
            if best is None or ndcg > best[0]:
                best = (ndcg, form, weight)
    assert best is not None
    return TextPopPriorScorer(vector, counts, best[1], best[2]), grid


def grid_record(chosen: Mapping[str, Any], grid: Mapping[str, float]) -> dict[str, Any]:
    """The results.json record of one selection: the chosen values and the validation grid."""
    return {**chosen, "chosen_on": "valid", "valid_ndcg10_grid": dict(grid)}


def mixed_ranks(
    dataset: Dataset,
    split: Split,
    vector: Scorer,
    prompt: HistoryPromptScorer | None,
    out: dict[str, Any],
) -> np.ndarray:
    """Test ranks of ``promptrec-zero-shot-mixed``; its record goes to ``out``.

    The record (``out["zero_shot_mixed"]``) holds the chosen weights and the validation grid.
    """
    years = item_years(dataset.items)
    times = history_times(dataset, split)
    scorer, grid = select_mixed_zero_shot(split, vector, prompt, years, times)
    chosen = {
        "prompt_weight": scorer.prompt_weight,
        "fresh_weight": scorer.fresh_weight,
        "items_with_year": int(np.isfinite(years).sum()),
    }
    out["zero_shot_mixed"] = grid_record(chosen, grid)
    return stage_ranks(scorer, split, "test", batch_size=4096)


def pop_prior_ranks(split: Split, vector: Scorer, out: dict[str, Any]) -> np.ndarray:
    """Test ranks of ``promptrec-text-pop-prior``; its record goes to ``out["text_pop_prior"]``."""
    scorer, grid = select_text_pop_prior(split, vector)
    record = grid_record({"form": scorer.form, "weight": scorer.weight}, grid)
    out["text_pop_prior"] = {**record, "zero_shot": False}
    return stage_ranks(scorer, split, "test")
