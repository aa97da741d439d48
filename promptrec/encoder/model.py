"""The trained recommender: item adapter + sequence model, its checkpoint, and fast scoring.

Scores are ``cos(user, item) / temperature`` with both sides L2-normalised, so the catalog vectors
can live in the worker's inner-product FAISS index unchanged and the scoring head (which expects
unit vectors) keeps working. A checkpoint is one safetensors file (weights; config, the warm-item
vocabulary and the prompt/encoder it was trained with in the metadata) plus a JSON sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from promptrec.encoder.adapter import ItemAdapter
from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.fusion import TextFusion
from promptrec.encoder.head_checkpoint import HEAD_PREFIX
from promptrec.encoder.sequence import SequenceEncoder

__all__ = [
    "MODEL_FORMAT",
    "TEXT_ENCODER_PREFIX",
    "ModelConfig",
    "RecModel",
    "load_model",
    "save_model",
]

MODEL_FORMAT = "promptrec-recmodel-v1"
_FUSION_MEAN = "fusion.text_mean"  # (text_dim,) tensor of a fused checkpoint
# A fine-tuned encoder's changed tensors (promptrec.encoder.finetune) are stored under this
# prefix, its description as JSON under the "text_encoder" metadata key.
TEXT_ENCODER_PREFIX = "text_encoder."
_TEXT_ENCODER_KEY = "text_encoder"


@dataclass
class ModelConfig:
    """Architecture and the inputs a model was trained on."""

    text_dim: int = 384  # 0: ID-only ablation
    dim: int = 64
    max_len: int = 50
    layers: int = 2
    heads: int = 1
    dropout: float = 0.3
    adapter_dropout: float = 0.1
    id_dropout: float = 0.1
    use_ids: bool = True
    profile_dim: int = 0  # >0: fuse the encoded user prompt
    temperature: float = 0.1
    item_prompt: str = "item"
    user_prompt: str = "user"
    encoder_model: str = ""  # model folder name of the frozen encoder
    encoder_max_length: int = 128

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse; unknown keys are an error (a checkpoint from another version)."""
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"model config has unknown keys: {', '.join(unknown)}")
        return cls(**data)


class RecModel(nn.Module):
    """Item adapter and sequence model over one warm-item vocabulary.

    Args:
        config: Architecture.
        warm_ids: Item ids with a learned ID vector (row ``i + 1`` of the ID table).
    """

    def __init__(self, config: ModelConfig, warm_ids: Sequence[str]) -> None:
        super().__init__()
        self.config = config
        self.warm_ids = list(warm_ids)
        self._warm_row = {item: i + 1 for i, item in enumerate(self.warm_ids)}
        n_ids = len(self.warm_ids) if config.use_ids else 0
        self.adapter = ItemAdapter(
            config.text_dim, config.dim, n_ids, config.adapter_dropout, config.id_dropout
        )
        self.sequence = SequenceEncoder(
            config.dim,
            config.max_len,
            config.layers,
            config.heads,
            config.dropout,
            config.profile_dim,
        )
        # Late fusion with the frozen text zero-shot score (chosen after training; None: off).
        self.fusion: TextFusion | None = None
        # Fine-tuned encoder tensors (state-dict name -> tensor) and their description; empty
        # and None for a frozen encoder. Plain attributes: not part of state_dict().
        self.text_encoder_weights: dict[str, torch.Tensor] = {}
        self.text_encoder_meta: dict[str, Any] | None = None

    @property
    def index_dim(self) -> int:
        """Width of the vectors this model puts in an index (fused: ``dim + text_dim``)."""
        return self.fusion.width if self.fusion is not None else self.config.dim

    def id_rows(self, item_ids: Sequence[str]) -> torch.Tensor:
        """``(n,)`` int64 ID-table rows; 0 for cold items (or when IDs are off)."""
        if not self.config.use_ids:
            return torch.zeros(len(item_ids), dtype=torch.int64)
        return torch.tensor([self._warm_row.get(i, 0) for i in item_ids], dtype=torch.int64)

    @torch.no_grad()
    def item_vectors(self, text: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit item vectors from ``(n, text_dim)`` frozen text vectors."""
        self.eval()
        device = next(self.parameters()).device
        t = torch.as_tensor(np.asarray(text, dtype=np.float32), device=device)
        vecs = self.adapter(t, self.id_rows(item_ids).to(device))
        return vecs.float().cpu().numpy()

    @torch.no_grad()
    def user_vectors(
        self, histories: Sequence[np.ndarray], profiles: np.ndarray | None = None
    ) -> np.ndarray:
        """``(b, dim)`` float32 unit user vectors.

        Args:
            histories: ``histories[i]`` is ``(n_i, dim)`` item vectors, oldest first; only the
                newest ``max_len`` are used.
            profiles: ``(b, profile_dim)`` encoded user prompts, or None.
        """
        self.eval()
        device = next(self.parameters()).device
        b, dim, max_len = len(histories), self.config.dim, self.config.max_len
        if b == 0:
            return np.zeros((0, dim), dtype=np.float32)
        lengths = [min(len(h), max_len) for h in histories]
        width = max(max(lengths), 1)
        batch = np.zeros((b, width, dim), dtype=np.float32)  # right-padded windows
        for i, h in enumerate(histories):
            if lengths[i]:
                batch[i, : lengths[i]] = np.asarray(h, dtype=np.float32)[-lengths[i] :]
        prof = None
        if self.config.profile_dim and profiles is not None:
            prof = torch.as_tensor(np.asarray(profiles, dtype=np.float32), device=device)
        users = self.sequence.last(
            torch.as_tensor(batch, device=device),
            torch.as_tensor(lengths, device=device),
            prof,
        )
        return users.float().cpu().numpy()

    def index_item_vectors(self, text: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        """``(n, index_dim)`` item vectors as served: fused with the text part when fusion is on."""
        vecs = self.item_vectors(text, item_ids)  # (n, dim)
        if self.fusion is None:
            return vecs
        cold = (self.id_rows(item_ids) == 0).numpy() if self.config.use_ids else None
        return self.fusion.items(vecs, text, cold)  # cold: items without an ID vector

    def index_user_vectors(
        self, histories: Sequence[np.ndarray], profiles: np.ndarray | None = None
    ) -> np.ndarray:
        """``(b, index_dim)`` user vectors from histories of index vectors (``(n_i, index_dim)``).

        With fusion, each history is split into its trained part (the sequence model's input)
        and its text part (the text user vector); ``users @ items.T`` then ranks by the fused
        score.
        """
        if self.fusion is None:
            return self.user_vectors(histories, profiles)
        parts = [self.fusion.split(np.asarray(h).reshape(-1, self.fusion.width)) for h in histories]
        trained = self.user_vectors([t for t, _ in parts], profiles)  # (b, dim)
        text = self.fusion.text_users([z for _, z in parts])  # (b, text_dim)
        return self.fusion.users(trained, text)


def save_model(path: Path, model: RecModel, extra: dict[str, Any] | None = None) -> None:
    """Writes the safetensors checkpoint ``path`` and ``path.with_suffix('.json')``."""
    path = Path(path)
    metadata = {
        "format": MODEL_FORMAT,
        "config": json.dumps(asdict(model.config)),
        "warm_ids": json.dumps(model.warm_ids),
    }
    tensors = dict(model.state_dict())
    if model.fusion is not None:
        metadata["fusion"] = model.fusion.metadata()
        tensors[_FUSION_MEAN] = torch.as_tensor(model.fusion.mean)
    if model.text_encoder_meta is not None:
        metadata[_TEXT_ENCODER_KEY] = json.dumps(model.text_encoder_meta)
        tensors.update({TEXT_ENCODER_PREFIX + k: v for k, v in model.text_encoder_weights.items()})
    save_checkpoint(path, tensors, metadata)
    sidecar = {"format": MODEL_FORMAT, "config": asdict(model.config), **(extra or {})}
    try:
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    except OSError as exc:
        raise CheckpointError(f"cannot write {path.with_suffix('.json')}: {exc}") from exc


def load_model(path: Path, device: str = "cpu") -> RecModel:
    """Reads a checkpoint written by :func:`save_model` (never unpickles anything).

    Raises:
        CheckpointError: Missing, unreadable, another format, or weights that do not fit.
    """
    tensors, metadata = load_checkpoint(Path(path))
    if metadata.get("format") != MODEL_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a promptrec model (format {metadata.get('format')!r}, "
            f"want {MODEL_FORMAT!r})"
        )
    weights = {
        k[len(TEXT_ENCODER_PREFIX) :]: tensors.pop(k)
        for k in [k for k in tensors if k.startswith(TEXT_ENCODER_PREFIX)]
    }
    try:
        config = ModelConfig.from_json(metadata["config"])
        warm_ids = json.loads(metadata["warm_ids"])
        model = RecModel(config, [str(i) for i in warm_ids])
        # A fine-tuned scoring head may ride along (head_checkpoint); it is not the model's.
        own = {k: v for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)}
        mean = own.pop(_FUSION_MEAN, None)
        model.load_state_dict(own, strict=True)
        if "fusion" in metadata:
            if mean is None:
                raise CheckpointError(f"checkpoint {path} records a fusion without its text mean")
            model.fusion = TextFusion.from_metadata(
                metadata["fusion"], mean.float().numpy(), config.dim
            )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {exc}") from exc
    model.text_encoder_meta = _text_encoder_meta(path, metadata.get(_TEXT_ENCODER_KEY), weights)
    model.text_encoder_weights = weights
    return model.to(device).eval()


def _text_encoder_meta(
    path: Path, raw: str | None, weights: dict[str, torch.Tensor]
) -> dict[str, Any] | None:
    """The tuned encoder's description; the listed tensors must be exactly the stored ones."""
    if raw is None:
        if weights:
            raise CheckpointError(
                f"checkpoint {path} holds {len(weights)} text-encoder tensors but no "
                f"{_TEXT_ENCODER_KEY!r} metadata"
            )
        return None
    try:
        meta = json.loads(raw)
        listed = {str(n) for n in meta["tensors"]}
        if not isinstance(meta.get("base_model"), str) or "base_fingerprint" not in meta:
            raise ValueError("no base model identity")
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad {_TEXT_ENCODER_KEY!r} metadata") from exc
    missing, extra = sorted(listed - set(weights)), sorted(set(weights) - listed)
    if missing or extra or not listed:
        raise CheckpointError(
            f"checkpoint {path}: tuned encoder tensors do not match its metadata "
            f"(missing {missing[:3]}, unlisted {extra[:3]}, listed {len(listed)})"
        )
    return dict(meta)
