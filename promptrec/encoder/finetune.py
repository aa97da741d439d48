"""Fine-tuning the text encoder jointly with the adapter and the sequence model.

``promptrec train --finetune-encoder {none,lora,last-layers}``. With ``none`` (the default) the
encoder stays frozen and training reads cached text vectors, exactly as before. Otherwise the top
``layers`` transformer layers of the encoder are tuned:

* ``last-layers``: their weights are unfrozen;
* ``lora``: low-rank adapters (``peft``, optional extra ``promptrec[finetune]``) are put on their
  attention query and value projections, and merged into the weights when training ends.

Why only the top layers: everything below them is frozen, so its output (the hidden states at
the input of the first tuned layer) is computed once per item and cached; a training step then
runs only the tuned layers, forward and backward. On CPU that is what makes tuning affordable.

Per step (:meth:`EncoderTuner.step_text`) the batch's unique items (at most ``items`` of them,
a seeded random subset) are encoded with gradients; every other item keeps the vector cached at
the last refresh, so the full or sampled softmax still sees the whole catalog. After each epoch
(:meth:`EncoderTuner.refresh`) every item is re-encoded by the tuned encoder; validation, the
best-epoch choice and the final scoring use those vectors. The encoder runs in eval mode (no
dropout), so a fresh row and a cached row of the same item agree.

The checkpoint stores only the encoder tensors that changed (LoRA: the merged projection
weights), prefixed :data:`~promptrec.encoder.model.TEXT_ENCODER_PREFIX`, with the base model's
identity (folder name and a fingerprint of its files) in the ``text_encoder`` metadata. The
worker (:func:`promptrec.encoder.tuned.tuned_text_encoder`) refuses tensors that do not fit its
base model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from promptrec.encoder.exceptions import EncoderError
from promptrec.encoder.text_encoder import TextEncoder
from promptrec.encoder.tuned import model_fingerprint

__all__ = ["FINETUNE_MODES", "EncoderTuner", "FinetuneConfig"]

log = logging.getLogger(__name__)

FINETUNE_MODES = ("none", "lora", "last-layers")
_DEFAULT_LR = {"lora": 1e-3, "last-layers": 1e-4}  # LoRA's zero-initialised B needs a larger step
_LORA_TARGETS = ("query", "value")
_CHECK_TOLERANCE = 1e-4  # partial vs full forward, unit vectors


@dataclass
class FinetuneConfig:
    """How the encoder is tuned (``mode="none"``: it is not)."""

    mode: str = "none"
    layers: int = 1  # top transformer layers tuned (unfrozen, or carrying LoRA)
    lr: float = 0.0  # 0: the mode's default (_DEFAULT_LR)
    items: int = 64  # items encoded with gradients per step; 0: all of the batch's
    lora_rank: int = 8
    lora_alpha: int = 16

    def __post_init__(self) -> None:
        if self.mode not in FINETUNE_MODES:
            raise ValueError(f"finetune mode must be one of {', '.join(FINETUNE_MODES)}")
        if self.layers < 1:
            raise ValueError(f"finetune layers must be >= 1, got {self.layers}")
        if self.lr < 0 or self.items < 0 or self.lora_rank < 1:
            raise ValueError("finetune lr and items must be >= 0 and lora_rank >= 1")

    @property
    def learning_rate(self) -> float:
        """The encoder's learning rate."""
        return self.lr or _DEFAULT_LR.get(self.mode, 1e-4)


class EncoderTuner:
    """The trainable copy of the encoder and its per-item caches (see the module docstring).

    Args:
        encoder: The frozen encoder of the data set (its folder and token limit are copied).
        texts: Prompt-wrapped item texts, catalog order; empty texts stay zero rows.
        config: What to tune.
        device: Where training runs (``"auto"``: CUDA when present).
        seed: Seed of the per-step item subset.

    Raises:
        EncoderError: ``mode`` is none, the model has fewer layers than asked, ``peft`` is
            missing for LoRA, or the cached partial forward disagrees with the model's own.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        texts: Sequence[str],
        config: FinetuneConfig,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if config.mode == "none":
            raise EncoderError("EncoderTuner needs a finetune mode other than 'none'")
        self.config = config
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device = torch.device(device)
        # A float32 copy loaded fresh from the folder: the data set's encoder may run in fp16.
        own = TextEncoder(
            encoder.model_dir, device=device.type, fp16=False, max_length=encoder.max_length
        )
        self.tokenizer, self.hf = own.tokenizer, own.model
        self.base_dir, self.max_length = encoder.model_dir, encoder.max_length
        layers = self.hf.encoder.layer
        if config.layers > len(layers):
            raise EncoderError(f"the encoder has {len(layers)} layers, not {config.layers}")
        self.first = len(layers) - config.layers  # index of the first tuned layer
        self.hf.eval()
        self.hf.requires_grad_(False)
        self._peft: Any = None
        if config.mode == "lora":
            self._add_lora()
        else:
            for layer in layers[self.first :]:
                layer.requires_grad_(True)
        self._base = {
            _base_name(k): v.detach().clone() for k, v in self._tuned_state(merged=False).items()
        }
        self.texts = list(texts)
        self.rows = [i for i, t in enumerate(self.texts) if t.strip()]
        self._lower = self._lower_states()  # per item: (tokens_i, hidden) input of layer `first`
        self._check_partial_forward()
        self.generator = torch.Generator().manual_seed(seed)
        self.refresh_seconds: list[float] = []
        self.cache = torch.as_tensor(self.refresh(), device=device)  # (n_items, hidden)

    def _add_lora(self) -> None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise EncoderError(
                "--finetune-encoder lora needs peft: pip install 'promptrec[finetune]'"
            ) from exc
        tuned = "|".join(str(i) for i in range(self.first, len(self.hf.encoder.layer)))
        targets = "|".join(_LORA_TARGETS)
        lora = LoraConfig(
            r=self.config.lora_rank,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=0.0,  # eval mode throughout (module docstring)
            target_modules=rf".*encoder\.layer\.({tuned})\.attention\.self\.({targets})",
        )
        # Injects the adapters into self.hf in place; self.hf keeps its own module names.
        self._peft = get_peft_model(self.hf, lora)

    @property
    def dim(self) -> int:
        """Width of the text vectors."""
        return int(self.hf.config.hidden_size)

    @property
    def lr(self) -> float:
        """The encoder's learning rate."""
        return self.config.learning_rate

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trainable encoder parameters (LoRA matrices, or the top layers' weights)."""
        return [p for p in self.hf.parameters() if p.requires_grad]

    def _encode_batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def _layers(self, x: torch.Tensor, mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Runs layers ``start:stop`` over ``x`` (b, T, hidden) with the (b, T) token mask."""
        from transformers.masking_utils import create_bidirectional_mask

        mask4 = create_bidirectional_mask(
            config=self.hf.config, inputs_embeds=x, attention_mask=mask
        )
        for layer in self.hf.encoder.layer[start:stop]:
            out = layer(x, mask4)
            x = out[0] if isinstance(out, tuple) else out
        return x

    @torch.no_grad()
    def _lower_states(self) -> dict[int, torch.Tensor]:
        """Frozen part, once: embeddings + layers below ``first`` for every non-empty item."""
        out: dict[int, torch.Tensor] = {}
        order = sorted(self.rows, key=lambda i: len(self.texts[i]))
        for start in range(0, len(order), 128):
            idx = order[start : start + 128]
            ids, mask = self._encode_batch([self.texts[i] for i in idx])
            x = self.hf.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            x = self._layers(x, mask, 0, self.first)  # (b, T, hidden)
            lengths = mask.sum(dim=1).tolist()
            for j, i in enumerate(idx):
                out[i] = x[j, : lengths[j]].clone()  # (tokens_i, hidden), padding dropped
        return out

    def encode_rows(self, rows: Sequence[int]) -> torch.Tensor:
        """``(len(rows), hidden)`` unit vectors of non-empty items through the tuned layers.

        Differentiable with respect to :meth:`parameters` unless called under ``no_grad``.
        """
        states = [self._lower[i] for i in rows]
        width = max(s.shape[0] for s in states)
        x = states[0].new_zeros(len(states), width, self.dim)  # (b, T, hidden), right-padded
        mask = torch.zeros(len(states), width, dtype=torch.int64, device=self.device)
        for j, s in enumerate(states):
            x[j, : s.shape[0]] = s
            mask[j, : s.shape[0]] = 1
        hidden = self._layers(x, mask, self.first, len(self.hf.encoder.layer))
        m = mask.unsqueeze(-1).float()  # (b, T, 1)
        # Mean pooling over real tokens, as TextEncoder does, then L2-normalised.
        pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)  # (b, hidden)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def _check_partial_forward(self) -> None:
        """The cached split must give the model's own output (guards a transformers change)."""
        rows = self.rows[:4]
        if not rows:
            return
        ids, mask = self._encode_batch([self.texts[i] for i in rows])
        full = self.hf(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, T, hidden)
        m = mask.unsqueeze(-1).float()
        want = F.normalize((full * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9), dim=-1)
        err = float((self.encode_rows(rows) - want).abs().max())
        if err > _CHECK_TOLERANCE:
            raise EncoderError(f"cached partial forward differs from the model by {err:.2e}")

    def step_text(self, inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """``(n_items, hidden)`` text vectors for one step: the batch's items fresh, with grad.

        Args:
            inp: ``(b, L)`` input item rows, -1 = pad.
            tgt: ``(b, L)`` target item rows, -1 = pad.
        """
        used = torch.unique(torch.cat([inp[inp >= 0], tgt[tgt >= 0]])).cpu()
        keep = torch.tensor(
            [len(self.texts[i].strip()) > 0 for i in used.tolist()], dtype=torch.bool
        )
        used = used[keep] if len(used) else used
        if self.config.items and len(used) > self.config.items:
            pick = torch.randperm(len(used), generator=self.generator)[: self.config.items]
            used = used[pick.sort().values]
        if len(used) == 0:
            return self.cache
        fresh = self.encode_rows(used.tolist())  # (n_used, hidden), with grad
        rows = used.to(self.device)
        with torch.no_grad():
            self.cache[rows] = fresh.detach()  # the newest vector of each item, for free
        return self.cache.detach().index_copy(0, rows, fresh)

    @torch.no_grad()
    def refresh(self) -> np.ndarray:
        """Re-encodes every item with the current encoder; ``(n_items, hidden)`` float32."""
        t0 = time.perf_counter()
        out = torch.zeros(len(self.texts), self.dim, device=self.device)
        order = sorted(self.rows, key=lambda i: self._lower[i].shape[0])
        for start in range(0, len(order), 256):
            idx = order[start : start + 256]
            out[torch.as_tensor(idx, device=self.device)] = self.encode_rows(idx)
        if hasattr(self, "cache"):
            self.cache.copy_(out)
        self.refresh_seconds.append(time.perf_counter() - t0)
        return out.cpu().numpy()

    def state(self) -> dict[str, torch.Tensor]:
        """Copies of the trainable parameters (for the best epoch)."""
        return {n: p.detach().clone() for n, p in self.hf.named_parameters() if p.requires_grad}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restores :meth:`state`."""
        params = dict(self.hf.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def _tuned_state(self, merged: bool) -> dict[str, torch.Tensor]:
        """Base-model tensors of the tuned layers (LoRA: merged into the weights if asked)."""
        model = self.hf
        if merged and self._peft is not None:
            model = self._peft.merge_and_unload()
            self._peft = None
        prefix = tuple(f"encoder.layer.{i}." for i in range(self.first, len(model.encoder.layer)))
        return {
            k: v for k, v in model.state_dict().items() if k.startswith(prefix) and "lora_" not in k
        }

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The tensors that changed (final; LoRA is merged) and the checkpoint metadata."""
        tuned = self._tuned_state(merged=True)
        changed = {
            _base_name(k): v.detach().float().cpu().contiguous()
            for k, v in tuned.items()
            if not torch.equal(v, self._base[_base_name(k)])
        }
        meta = {
            "mode": self.config.mode,
            "config": asdict(self.config),
            "base_model": self.base_dir.name,
            "base_fingerprint": model_fingerprint(self.base_dir),
            "max_length": self.max_length,
            "tensors": sorted(changed),
        }
        return changed, meta


def _base_name(name: str) -> str:
    """A merged model's state-dict name as the plain model spells it (peft leaves 'base_layer')."""
    return name.replace(".base_layer.", ".")
