"""The scoring head as the ranking stage of ``promptrec train``: retrieval lists, training, report.

Retrieval is the worker's: the trained item vectors go into a FAISS index built from the
worker's :class:`IndexSettings` (``PROMPTREC_INDEX_*``), every query asks for the worker's
``candidates`` (``PROMPTREC_CANDIDATES``) with the items of the user's history excluded, and the
user vector is the sequence model's over that history (plus the encoded profile when the model
fuses one). Lists:

- train: for each user, each of the newest ``positions`` training items is a target, with the
  training items before it as the history (training part of the split only);
- valid / test: the protocol's targets and histories (:meth:`Split.histories`).

The report compares the trained head with plain cosine over the SAME retrieved candidates, per
evaluated user (a target that retrieval missed is a miss for both), with the paired test of
:mod:`promptrec.evaluation.stats` on NDCG@10 and HR@10.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from promptrec.encoder.head import ScoringHead
from promptrec.encoder.head_lists import CandidateLists, cosine_ranks, head_ranks, list_metrics
from promptrec.encoder.head_training import HeadTrainConfig, train_head
from promptrec.encoder.model import RecModel
from promptrec.evaluation.protocol import Split
from promptrec.evaluation.stats import paired_test, per_user_metric
from promptrec.index import IndexSettings, create_index

__all__ = ["compare_on", "retrieval_lists", "run_head_stage"]

log = logging.getLogger(__name__)

_QUERY_BATCH = 1024  # user vectors and searches per call
Stage = Literal["train", "valid", "test"]


def _queries(
    split: Split, stage: Stage, positions: int
) -> tuple[list[int], list[list[int]], list[int]]:
    """``(user rows, histories, target rows)`` of one stage (see the module docstring)."""
    users: list[int] = []
    hists: list[list[int]] = []
    targets: list[int] = []
    if stage == "train":
        for u, seq in enumerate(split.train):
            for t in range(max(1, len(seq) - positions), len(seq)):
                users.append(u)
                hists.append(seq[:t])
                targets.append(seq[t])
        return users, hists, targets
    wanted = split.targets(stage)
    histories = split.histories(stage)
    for u in map(int, np.flatnonzero(wanted >= 0)):
        users.append(u)
        hists.append(histories[u])
        targets.append(int(wanted[u]))
    return users, hists, targets


def retrieval_lists(
    model: RecModel,
    text: np.ndarray,
    split: Split,
    profiles: np.ndarray | None,
    stage: Stage,
    k: int,
    index_settings: IndexSettings,
    positions: int = 10,
) -> CandidateLists:
    """The ``k`` candidates the worker would retrieve for every query of ``stage``.

    Args:
        model: The trained model.
        text: ``(n_items, text_dim)`` frozen item text vectors, catalog order.
        split: The split.
        profiles: ``(n_users, profile_dim)`` encoded user prompts, or None.
        stage: ``train``, ``valid`` or ``test``.
        k: Candidates per query (the worker's ``candidates``).
        index_settings: The worker's index settings (flat or HNSW).
        positions: Training targets per user (``train`` only).
    """
    # The vectors the worker serves: fused with the frozen text part when the model has a fusion.
    items = model.index_item_vectors(text, split.item_ids)  # (n_items, index_dim) unit rows
    index = create_index(items.shape[1], index_settings)
    index.upsert_many(split.item_ids, items)
    catalog_row = np.empty(len(split.item_ids), dtype=np.int64)  # storage row -> catalog row
    catalog_row[index.rows_of(split.item_ids)] = np.arange(len(split.item_ids))
    users, hists, targets = _queries(split, stage, positions)
    fuse = profiles is not None and bool(model.config.profile_dim)
    vecs, rows = [], []
    for start in range(0, len(users), _QUERY_BATCH):
        end = start + _QUERY_BATCH
        batch_hists = hists[start:end]
        prof = profiles[np.asarray(users[start:end])] if fuse and profiles is not None else None
        u = model.index_user_vectors(
            [items[np.asarray(h, dtype=np.int64)] for h in batch_hists], prof
        )
        exclude = [{split.item_ids[i] for i in h} for h in batch_hists]
        _, found = index.search_rows(u, k, exclude=exclude)  # (b, <=k) storage rows, -1 = none
        cand = np.full((len(batch_hists), k), -1, dtype=np.int64)
        cand[:, : found.shape[1]] = np.where(found >= 0, catalog_row[np.maximum(found, 0)], -1)
        vecs.append(u)
        rows.append(cand)
    dim = items.shape[1]
    all_rows = np.concatenate(rows) if rows else np.zeros((0, k), dtype=np.int64)
    tgt = np.asarray(targets, dtype=np.int64)
    match = all_rows == tgt[:, None]  # (n, k): where the target was retrieved
    position = np.where(match.any(axis=1), match.argmax(axis=1), -1)
    return CandidateLists(
        np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32),
        all_rows,
        position,
        items,
        np.asarray(users, dtype=np.int64),
    )


def compare_on(lists: CandidateLists, head: ScoringHead) -> dict[str, Any]:
    """Cosine vs ``head`` over the same candidates: metrics and paired tests (head - cosine)."""
    cos, trained = cosine_ranks(lists), head_ranks(head, lists)
    paired = {
        metric: paired_test(
            per_user_metric(trained, metric), per_user_metric(cos, metric)
        ).to_dict()
        for metric in ("NDCG@10", "HR@10")
    }
    return {
        "cosine": _rounded(list_metrics(cos)),
        "head": _rounded(list_metrics(trained)),
        "retrieved": round(float((lists.target >= 0).mean()), 5),  # HR@k of retrieval
        "users": len(lists),
        "paired_head_minus_cosine": paired,
    }


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in metrics.items()}


def run_head_stage(
    model: RecModel,
    text: np.ndarray,
    split: Split,
    profiles: np.ndarray | None,
    config: HeadTrainConfig,
    hidden: int,
    online_learning_rate: float,
    candidates: int,
    index_settings: IndexSettings,
    stages: Sequence[Stage] = ("valid", "test"),
) -> tuple[ScoringHead | None, dict[str, Any]]:
    """Trains the head over retrieved candidates; returns (the head to ship or None, report).

    The report holds what training chose (:meth:`HeadTrainResult.summary`), the retrieval
    settings, and :func:`compare_on` of the best trained head on each of ``stages``.
    """

    def lists(stage: Stage) -> CandidateLists:
        return retrieval_lists(
            model, text, split, profiles, stage, candidates, index_settings, config.positions
        )

    train, valid = lists("train"), lists("valid")
    result = train_head(train, valid, hidden, online_learning_rate, config)
    log.info(
        "scoring head: %s (valid NDCG@10 head %.4f vs cosine %.4f, lr %g, epoch %d, %.1f s)",
        "trained head" if result.head is not None else "cosine kept",
        result.valid_best["NDCG@10"],
        result.valid_cosine["NDCG@10"],
        result.learning_rate,
        result.epoch,
        result.seconds,
    )
    report: dict[str, Any] = {
        **result.summary(),
        "candidates": candidates,
        "index": index_settings.kind,
        "positions": config.positions,
        "epochs": config.epochs,
        "learning_rates": list(config.learning_rates),
    }
    for stage in stages:
        report[stage] = compare_on(valid if stage == "valid" else lists(stage), result.best)
    return result.head, report
