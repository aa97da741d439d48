"""Strict cold-start protocol: a global time cut; items first seen after it are cold.

* Cut: the ``quantile`` of all interaction timestamps (one global time ``cut_ts``).
* Training data: only interactions before the cut. Per user, the last pre-cut interaction is
  the validation target (early stopping, hyper-parameters), the rest is training data.
* Cold items: items whose first interaction is at or after the cut. They have no training
  interaction, hence no ID vector (the model is built from the pre-cut warm set), but their
  catalog text exists, as it does for a new item arriving on the ``items`` topic.
* Test events: per user, the FIRST interaction after the cut whose item is cold (one per user,
  so users are the bootstrap unit as in the main table). The history the model may use is
  everything the user did before that event (pre- and post-cut; seeing interactions at
  inference time is not training on them) and is excluded from the ranking. The ranking is over
  the FULL catalog (warm and cold items), so a method must find the cold target among warm ones.

Pop has zero counts for every cold item, so it ranks them after all warm items (ties by catalog
order); ``random`` scores uniformly at random (seeded) and gives the chance level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from promptrec.encoder.model import ModelConfig
from promptrec.encoder.training import ModelScorer, TrainConfig, train_model
from promptrec.evaluation.baselines import PopScorer
from promptrec.evaluation.datasets import Dataset, DatasetError
from promptrec.evaluation.fusion import select_fusion
from promptrec.evaluation.protocol import Scorer, Split, rank_users
from promptrec.evaluation.report import uncertainty_report

if TYPE_CHECKING:
    from promptrec.encoder.finetune import EncoderTuner

__all__ = ["ColdStart", "RandomScorer", "cold_start_split", "run_cold_start"]


@dataclass
class ColdStart:
    """The pre-cut training split and the cold test events."""

    split: Split  # pre-cut: train + valid targets; test unused (-1)
    cut_ts: int
    quantile: float
    cold: np.ndarray  # (n_items,) bool: first seen at or after the cut
    users: list[int]  # user rows (of ``split.user_ids``) with a cold test event
    histories: list[list[int]]  # what each of them did before the event
    targets: np.ndarray  # (n_events,) cold item rows
    # (n_items,) bool: first seen in the last (1 - quantile) of the pre-cut time (a nested cut
    # inside the training period): the validation stand-ins for cold items (fusion calibration).
    inner_cold: np.ndarray | None = None

    def ranks(self, scorer: Scorer) -> np.ndarray:
        """0-based target ranks of ``scorer`` on the cold test events."""
        return rank_users(scorer, self.users, self.histories, self.targets, self.split.n_items)

    def summary(self) -> dict[str, object]:
        """JSON-friendly description of the protocol instance."""
        return {
            "quantile": self.quantile,
            "cut_ts": self.cut_ts,
            "cold_items": int(self.cold.sum()),
            "warm_items": int((~self.cold).sum()),
            "events": len(self.users),
            "train_interactions": sum(len(t) for t in self.split.train),
        }


def cold_start_split(dataset: Dataset, quantile: float = 0.7) -> ColdStart:
    """Builds the protocol of the module docstring on ``dataset``.

    Raises:
        ValueError: ``quantile`` outside (0, 1).
        DatasetError: No test event has a cold target.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"the cold-start cut quantile must lie in (0, 1), got {quantile}")
    item_ids = dataset.item_ids
    row = {item: i for i, item in enumerate(item_ids)}
    ts = np.array([e.ts for e in dataset.interactions], dtype=np.int64)
    cut = int(np.quantile(ts, quantile))
    first: dict[int, int] = {}
    sequences: dict[str, list[tuple[int, int]]] = {}
    for event in dataset.interactions:  # time order
        item = row[event.item_id]
        first.setdefault(item, event.ts)
        sequences.setdefault(event.user_id, []).append((item, event.ts))
    cold = np.array([first.get(i, cut) >= cut for i in range(len(item_ids))])
    user_ids = list(sequences)
    train, valid, users, histories, targets = [], [], [], [], []
    for u, user in enumerate(user_ids):
        seq = sequences[user]
        pre = [item for item, t in seq if t < cut]
        if len(pre) >= 2:
            train.append(pre[:-1])
            valid.append(pre[-1])
        else:
            train.append(pre)
            valid.append(-1)
        for pos, (item, t) in enumerate(seq):
            if t >= cut and cold[item]:
                users.append(u)
                histories.append([i for i, _ in seq[:pos]])
                targets.append(item)
                break
    if not users:
        raise DatasetError(
            f"cold start: no interaction after the {quantile} time cut targets an item first "
            "seen after it; try another --cold-start quantile"
        )
    split = Split(item_ids, user_ids, train, np.array(valid), np.full(len(user_ids), -1))
    before = ts[ts < cut]  # the same quantile again, inside the training period
    inner = int(np.quantile(before, quantile)) if len(before) else cut
    inner_cold = np.array([inner <= first.get(i, cut) < cut for i in range(len(item_ids))])
    return ColdStart(split, cut, quantile, cold, users, histories, np.array(targets), inner_cold)


class RandomScorer:
    """Uniformly random scores (seeded): the chance level of a ranking."""

    def __init__(self, n_items: int, seed: int = 0) -> None:
        self.n_items = n_items
        self.rng = np.random.default_rng(seed)

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` independent uniform scores."""
        return self.rng.random((len(users), self.n_items))


def run_cold_start(
    cs: ColdStart,
    text: np.ndarray,
    profiles: np.ndarray | None,
    config: ModelConfig,
    train: TrainConfig,
    seed: int = 0,
    fusion: bool = True,
    tuner: EncoderTuner | None = None,
) -> dict[str, Any]:
    """Trains ``config`` on the pre-cut data of ``cs`` and reports its cold test events.

    Returns the ``cold_start`` part of ``results.json``: the protocol's numbers, what training
    did, and metrics, intervals and paired tests of ``promptrec`` against ``pop`` and
    ``random`` on the cold events. With ``tuner`` the encoder is fine-tuned on the pre-cut
    data too, and cold items are encoded by the tuned encoder (as a worker would encode them).
    """
    result = train_model(cs.split, text, config, train, profiles, tuner)
    if result.text is not None:
        # Tuned encoder: the model (and its fusion) scores with the tuned text vectors.
        text = result.text
    fused: dict[str, Any] = {}
    extra: dict[str, np.ndarray] = {}
    if fusion and config.text_dim:
        # Everything is chosen on the pre-cut validation targets. The items first seen late in
        # the training period stand in for cold items there; the cold calibration maximises
        # the mean of the cold- and warm-target validation NDCG@10 ("balanced"); the
        # "all"-targets objective is reported as promptrec-fused-all.
        model = result.model
        extra["promptrec-unfused"] = cs.ranks(ModelScorer(model, text, cs.split.item_ids, profiles))
        fused["all"] = select_fusion(
            model, cs.split, text, profiles, simulate_cold=cs.inner_cold, unreleased=cs.cold
        )
        extra["promptrec-fused-all"] = cs.ranks(
            ModelScorer(model, text, cs.split.item_ids, profiles)
        )
        fused["balanced"] = select_fusion(
            model,
            cs.split,
            text,
            profiles,
            simulate_cold=cs.inner_cold,
            unreleased=cs.cold,
            cold_objective="balanced",
        )

    scorer = ModelScorer(result.model, text, cs.split.item_ids, profiles)
    ranks = {
        "promptrec": cs.ranks(scorer),
        **extra,
        "pop": cs.ranks(PopScorer(cs.split)),
        "random": cs.ranks(RandomScorer(cs.split.n_items, seed)),
    }
    return {
        **cs.summary(),
        "protocol": "global time cut; items first seen after it have no ID vector and no "
        "training interaction; per user the first post-cut event with a cold target; full "
        "ranking over all items, the user's earlier items excluded",
        "training": result.summary(),
        **({"fusion": fused} if fused else {}),
        **uncertainty_report(ranks, "promptrec"),
    }
