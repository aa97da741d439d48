"""Zero-shot recommendation from a user PROMPT: "a user who liked X, Y, Z ...", nothing trained.

For each user, the titles of the newest ``recent`` history items (newest first, so the token
limit cuts the oldest) fill a user template (``user_history``, ``user_liked``, ...; the
templates are configuration, :file:`promptrec/encoder/prompts.json`), together with the user's
profile where the template has a ``{profile}`` slot. The frozen encoder embeds that text, and
items are ranked by cosine similarity to the frozen vectors of their prompt-wrapped item texts,
mean-centred over the catalog as in
:class:`~promptrec.evaluation.baselines.TextZeroShotScorer` (a statistic of item texts only).
The template and ``recent`` are chosen on the validation targets (:func:`select_history_prompt`).
Encoded user prompts go through the on-disk text cache, so repeated runs do not re-encode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.encoder.features import encode_cached, render_fields
from promptrec.encoder.prompts import PromptTemplates
from promptrec.encoder.text_encoder import TextEncoder
from promptrec.evaluation.protocol import Split, evaluate

__all__ = [
    "HISTORY_TEMPLATES",
    "HistoryPromptScorer",
    "history_prompts",
    "select_history_prompt",
]

HISTORY_TEMPLATES = ("user_history", "user_liked", "user_liked_next")
RECENT_GRID = (5, 15)


def history_prompts(
    prompts: PromptTemplates,
    template: str,
    titles: Sequence[str],
    histories: Sequence[Sequence[int]],
    profiles: Sequence[Mapping[str, Any] | None],
    recent: int,
    max_chars: int = 4000,
) -> list[str]:
    """One user prompt per history: the newest ``recent`` titles, newest first."""
    out = []
    for hist, profile in zip(histories, profiles, strict=True):
        names = [titles[int(i)] for i in reversed(hist[-recent:])] if recent else []
        fields = {"history": names, "profile": dict(profile or {})}
        out.append(render_fields(prompts, template, fields, {}, max_chars) if names else "")
    return out


class HistoryPromptScorer:
    """Cosine between an encoded history prompt and centred frozen item text vectors.

    Args:
        encoder: The frozen text encoder.
        prompts: Templates; ``template`` must be one of them.
        template: User template with a ``{history}`` slot.
        text: ``(n_items, dim)`` frozen item text vectors (catalog order).
        titles: Item titles, catalog order.
        profiles: Per user row, profile attributes (or None).
        recent: Newest history items named in the prompt.
        cache_dir: Text-vector cache folder (None: no cache).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        prompts: PromptTemplates,
        template: str,
        text: np.ndarray,
        titles: Sequence[str],
        profiles: Sequence[Mapping[str, Any] | None],
        recent: int = 10,
        cache_dir: Path | None = None,
    ) -> None:
        items = np.asarray(text, dtype=np.float32)
        items = items - items.mean(axis=0, keepdims=True)
        self.items = items / np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
        self.encoder, self.prompts, self.template = encoder, prompts, template
        self.titles, self.profiles, self.recent, self.cache_dir = (
            titles,
            profiles,
            recent,
            cache_dir,
        )

    def user_vectors(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, dim)`` encoded user prompts (zero rows for empty histories)."""
        profiles = [self.profiles[int(u)] for u in users]
        texts = history_prompts(
            self.prompts, self.template, self.titles, histories, profiles, self.recent
        )
        return encode_cached(self.encoder, texts, self.cache_dir, progress=False)

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` cosine similarities (zero rows for empty histories)."""
        return self.user_vectors(users, histories) @ self.items.T


def select_history_prompt(
    split: Split,
    encoder: TextEncoder,
    prompts: PromptTemplates,
    text: np.ndarray,
    titles: Sequence[str],
    profiles: Sequence[Mapping[str, Any] | None],
    cache_dir: Path | None = None,
    templates: Sequence[str] = HISTORY_TEMPLATES,
    recent_grid: Sequence[int] = RECENT_GRID,
) -> tuple[HistoryPromptScorer, dict[str, float]]:
    """The (template, recent) with the best validation NDCG@10, and every grid point's score.

    Raises:
        PromptError: A template name is not defined.
    """
    for name in templates:
        prompts.template(name)  # unknown template -> PromptError before any encoding
    grid: dict[str, float] = {}
    best: tuple[float, HistoryPromptScorer] | None = None
    for name in templates:
        for recent in recent_grid:
            scorer = HistoryPromptScorer(
                encoder, prompts, name, text, titles, profiles, recent, cache_dir
            )
            # Users are scored in one batch per call: the encoder batches internally.
            ndcg = evaluate(scorer, split, "valid", batch_size=4096)["NDCG@10"]
            grid[f"{name}/recent={recent}"] = round(ndcg, 5)
            if best is None or ndcg > best[0]:
                best = (ndcg, scorer)
    assert best is not None
    return best[1], grid
