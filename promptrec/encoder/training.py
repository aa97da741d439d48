"""Offline training of :class:`~promptrec.encoder.model.RecModel` (``promptrec train``).

Recipe (SASRec with a full softmax): every training sequence is cut into windows of ``max_len``
items, the newest window ending at the user's last training item and the older ones shifted by
a random offset each epoch; at every position the model predicts the next item with
cross-entropy over ALL catalog items (``cos / temperature`` logits). Item vectors are recomputed
from the frozen text vectors each step (the adapter is tiny), so the text path is trained on
every item. Validation NDCG@10 after each epoch drives early stopping; the best epoch's weights
are kept. Everything is seeded; CUDA is used when present.

Sampled softmax (``TrainConfig.negatives = N > 0``, :mod:`promptrec.encoder.sampling`): for
large catalogs, each batch scores its own positives plus N shared negatives (uniform or
popularity proposal) with the logQ correction, instead of every item.

Encoder fine-tuning (``tuner``, :mod:`promptrec.encoder.finetune`): the step's text vectors
come from :meth:`EncoderTuner.step_text` (the batch's items re-encoded with gradients), the
encoder's trainable parameters join the optimiser, and every item is re-encoded after each
epoch; validation and the result use those tuned vectors (``TrainResult.text``).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from promptrec.encoder.model import ModelConfig, RecModel
from promptrec.encoder.sampling import SAMPLERS, SampledSoftmax

if TYPE_CHECKING:
    from promptrec.encoder.finetune import EncoderTuner

__all__ = [
    "ModelScorer",
    "TrainConfig",
    "TrainResult",
    "TrainingSplit",
    "train_model",
]

log = logging.getLogger(__name__)


class TrainingSplit(Protocol):
    """What training needs of a split (:class:`promptrec.evaluation.protocol.Split` has it).

    A protocol, not an import: the encoder package never depends on the evaluation package.
    """

    item_ids: list[str]
    train: list[list[int]]  # per user, item rows oldest first

    @property
    def n_items(self) -> int:
        """Catalog size."""
        ...

    def evaluate(self, scorer: Any, stage: Any = ...) -> dict[str, float]:
        """Full-ranking metrics (``NDCG@10`` ...) of ``scorer`` on ``stage``."""
        ...


@dataclass
class TrainConfig:
    """Optimisation settings (the architecture is :class:`ModelConfig`)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20
    seed: int = 42
    device: str = "auto"
    progress: bool = True
    negatives: int = 0  # 0: full softmax over all items; N > 0: sampled softmax (module doc)
    sampler: str = "uniform"  # proposal of the N negatives: "uniform" or "pop"

    def __post_init__(self) -> None:
        if self.negatives < 0:
            raise ValueError(f"negatives must be >= 0, got {self.negatives}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


@dataclass
class TrainResult:
    """The trained model and what happened."""

    model: RecModel
    best_epoch: int
    valid: dict[str, float]
    curve: list[float] = field(default_factory=list)  # validation NDCG@10 per epoch
    seconds: float = 0.0
    device: str = "cpu"
    epoch_seconds: list[float] = field(default_factory=list)  # optimisation only, no validation
    text: np.ndarray | None = None  # (n_items, text_dim) tuned text vectors; None: frozen ones
    finetune: dict[str, Any] = field(default_factory=dict)  # what encoder tuning did

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no weights)."""
        extra = {"finetune": self.finetune} if self.finetune else {}
        return {
            **extra,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.curve),
            "valid": self.valid,
            "valid_ndcg10_curve": [round(x, 5) for x in self.curve],
            "train_seconds": round(self.seconds, 1),
            "seconds_per_epoch": round(float(np.mean(self.epoch_seconds)), 6)
            if self.epoch_seconds
            else 0.0,
            "device": self.device,
        }


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ModelScorer:
    """Scores all items with a trained model (implements the evaluation ``Scorer``).

    Args:
        model: The model.
        text: ``(n_items, text_dim)`` frozen item text vectors, catalog order.
        item_ids: Catalog ids (warm ones get their ID vector).
        profiles: ``(n_users, profile_dim)`` encoded user prompts, or None.
    """

    def __init__(
        self,
        model: RecModel,
        text: np.ndarray,
        item_ids: Sequence[str],
        profiles: np.ndarray | None = None,
    ) -> None:
        self.model = model
        # (n_items, index_dim) unit rows, as the worker indexes them (fused when fusion is on).
        self.items = model.index_item_vectors(text, item_ids)
        self.profiles = profiles

    def score(self, users: Sequence[int], histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(b, n_items)`` cosine scores (with fusion: the fused score over the user's norm)."""
        hist = [self.items[np.asarray(h, dtype=np.int64)] for h in histories]
        prof = self.profiles[np.asarray(users)] if self.profiles is not None else None
        vecs = self.model.index_user_vectors(hist, prof)  # (b, index_dim)
        return vecs @ self.items.T


def _windows(
    train: Sequence[Sequence[int]], max_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded (inputs, targets, user) windows of one epoch; pads are -1."""
    inputs, targets, users = [], [], []
    for u, seq in enumerate(train):
        m = len(seq) - 1  # predictable positions
        if m < 1:
            continue
        ends = [m]
        shift = int(rng.integers(0, max_len))
        end = m - max_len - shift
        while end > 0:
            ends.append(end)
            end -= max_len
        for e in ends:
            s = max(0, e - max_len)
            inp = np.full(max_len, -1, dtype=np.int64)
            tgt = np.full(max_len, -1, dtype=np.int64)
            inp[: e - s] = seq[s:e]
            tgt[: e - s] = seq[s + 1 : e + 1]
            inputs.append(inp)
            targets.append(tgt)
            users.append(u)
    return np.stack(inputs), np.stack(targets), np.array(users, dtype=np.int64)


def train_model(
    split: TrainingSplit,
    text: np.ndarray,
    config: ModelConfig,
    train: TrainConfig,
    profiles: np.ndarray | None = None,
    tuner: EncoderTuner | None = None,
) -> TrainResult:
    """Trains on ``split.train`` with early stopping on validation NDCG@10.

    Args:
        split: The leave-one-out split.
        text: ``(n_items, text_dim)`` frozen text vectors (ignored by an ID-only config).
        config: Architecture; ``text_dim`` must match ``text`` unless it is 0.
        train: Optimisation settings.
        profiles: ``(n_users, profile_dim)`` encoded user prompts when ``config.profile_dim``.
        tuner: Fine-tunes the encoder jointly (module docstring); None keeps it frozen.

    Raises:
        ValueError: Shapes disagree or no user has two training interactions.
    """
    if config.text_dim and text.shape[1] != config.text_dim:
        raise ValueError(f"text vectors are {text.shape[1]}-d, config says {config.text_dim}")
    seed_everything(train.seed)
    rng = np.random.default_rng(train.seed)
    device = _device(train.device)
    warm = sorted({split.item_ids[i] for seq in split.train for i in seq})
    model = RecModel(config, warm).to(device)
    t_text = torch.as_tensor(np.asarray(text, dtype=np.float32), device=device)
    id_rows = model.id_rows(split.item_ids).to(device)
    t_prof = None
    if config.profile_dim and profiles is not None:
        t_prof = torch.as_tensor(np.asarray(profiles, dtype=np.float32), device=device)
    n_items, dim = split.n_items, config.dim
    optimiser = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    best_tuned: tuple[dict[str, torch.Tensor], np.ndarray] | None = None
    if tuner is not None:
        optimiser.add_param_group({"params": tuner.parameters(), "lr": tuner.lr})
        if not config.text_dim:
            raise ValueError("encoder fine-tuning needs a text path (text_dim > 0)")
        text = tuner.cache.cpu().numpy().copy()  # (n_items, text_dim): the tuner's own vectors
    from tqdm import tqdm

    best_state: dict[str, torch.Tensor] | None = None
    best, best_epoch, since, curve = -1.0, 0, 0, []
    t0 = time.perf_counter()
    bar = tqdm(range(1, train.epochs + 1), desc="train", unit="epoch", disable=not train.progress)
    sampled = None
    if train.negatives > 0:
        sampled = SampledSoftmax(split, train.negatives, train.sampler, train.seed, config, device)
    epoch_seconds: list[float] = []
    for epoch in bar:
        t_epoch = time.perf_counter()
        inputs, targets, users = _windows(split.train, config.max_len, rng)
        if len(inputs) == 0:
            raise ValueError("no user has two training interactions: nothing to learn")
        order = rng.permutation(len(inputs))
        model.train()
        total = 0.0
        for start in range(0, len(order), train.batch_size):
            idx = order[start : start + train.batch_size]
            inp = torch.as_tensor(inputs[idx], device=device)  # (b, L), -1 = pad
            tgt = torch.as_tensor(targets[idx], device=device)  # (b, L), -1 = pad
            prof = (
                t_prof[torch.as_tensor(users[idx], device=device)] if t_prof is not None else None
            )
            real = tgt >= 0  # (b, L): only real positions are scored (saves the padded ones)
            if tuner is not None:
                t_text = tuner.step_text(inp, tgt)  # (n_items, text_dim), batch rows with grad
            if sampled is None:
                items = model.adapter(t_text, id_rows)  # (n_items, dim) unit rows
                padded = torch.cat([items, items.new_zeros(1, dim)])  # row n_items = padding
                seq = padded[torch.where(inp >= 0, inp, n_items)]  # (b, L, dim)
                h = F.normalize(model.sequence(seq, prof)[real], dim=-1)  # (n_real, dim)
                logits = (h @ items.T) / config.temperature  # (n_real, n_items)
                labels = tgt[real]
            else:
                logits, labels = sampled.logits(model, inp, tgt, real, prof, t_text, id_rows)
            loss = F.cross_entropy(logits, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        epoch_seconds.append(time.perf_counter() - t_epoch)
        if tuner is not None:
            text = tuner.refresh()  # every item through the tuned encoder, for validation
        scorer = ModelScorer(model, text, split.item_ids, profiles)
        ndcg = split.evaluate(scorer, "valid")["NDCG@10"]
        curve.append(ndcg)
        if ndcg > best:
            best, best_epoch, since = ndcg, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            if tuner is not None:
                best_tuned = (tuner.state(), text)
        else:
            since += 1
        bar.set_postfix(loss=f"{total / len(order):.3f}", ndcg10=f"{ndcg:.4f}", best=f"{best:.4f}")
        log.debug("epoch %d: loss %.4f, valid NDCG@10 %.4f", epoch, total / len(order), ndcg)
        if since >= train.patience:
            break
    bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    finetune: dict[str, Any] = {}
    if tuner is not None and best_tuned is not None:
        tuner.load_state(best_tuned[0])
        text = best_tuned[1]
        model.text_encoder_weights, model.text_encoder_meta = tuner.export()
        finetune = {
            **model.text_encoder_meta["config"],
            "tensors": len(model.text_encoder_weights),
            "refresh_seconds": round(float(np.mean(tuner.refresh_seconds)), 3),
        }
    valid = split.evaluate(ModelScorer(model, text, split.item_ids, profiles), "valid")
    log.info("best epoch %d, validation %s", best_epoch, valid)
    seconds = time.perf_counter() - t0
    result = TrainResult(model.cpu(), best_epoch, valid, curve, seconds, str(device), epoch_seconds)
    if tuner is not None:
        result.text, result.finetune = text, finetune
    return result


def config_dict(config: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """Both configs as one JSON-friendly dict."""
    return {"model": asdict(config), "train": asdict(train)}
