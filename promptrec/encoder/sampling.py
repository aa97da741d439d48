"""Sampled softmax with the logQ correction, for training over large catalogs.

The candidates of one batch are its positives (every target of the batch, shared by all
positions) plus N negatives drawn from a proposal ``q`` (uniform, or popularity
``q ~ count + 1``), shared by the whole batch. Only the item vectors of candidates and inputs are
computed, so a step costs ``O(b L (b L + N))`` instead of ``O(b L n_items)``. The logQ correction
subtracts ``log m_j`` from each candidate's logit, where ``m_j = (B p_j + N q_j) / (B + N)`` is
item j's probability under the mixture the candidate set is drawn from (B positives following
the training-target frequency ``p``, N samples from ``q``). Without it, items that are
candidates often (popular ones) would be pushed down too little.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from promptrec.encoder.model import ModelConfig, RecModel

__all__ = ["SAMPLERS", "SampledSoftmax"]

SAMPLERS = ("uniform", "pop")


class SampledSoftmax:
    """Candidates and logQ-corrected logits of one batch (see the module docstring).

    Args:
        split: Anything with ``n_items`` and ``train`` (per user, item rows oldest first).
        negatives: Shared negatives drawn per batch.
        sampler: ``"uniform"`` or ``"pop"`` (``q ~ count + 1``).
        seed: Seed of the sampler's own generator.
        config: The model's architecture (``dim``, ``temperature``).
        device: Where the sampling tensors live.
    """

    def __init__(
        self,
        split: Any,
        negatives: int,
        sampler: str,
        seed: int,
        config: ModelConfig,
        device: torch.device,
    ) -> None:
        if negatives < 1:
            raise ValueError(f"a sampled softmax needs >= 1 negative, got {negatives}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        counts = np.zeros(split.n_items, dtype=np.float64)
        for seq in split.train:
            np.add.at(counts, seq[1:], 1.0)  # targets: every training item but the first
        self.p = torch.as_tensor(counts / max(counts.sum(), 1.0), device=device)
        q = np.ones(split.n_items) if sampler == "uniform" else counts + 1.0
        self.q = torch.as_tensor(q / q.sum(), device=device)
        self.n = negatives
        self.n_items, self.dim, self.temperature = split.n_items, config.dim, config.temperature
        # Its own seeded stream, so sampling does not shift the model's dropout randomness.
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def candidates(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Candidates of a batch with positives ``pos`` (``(n,)`` item rows).

        Returns:
            ``(n_cand,)`` sorted unique candidate rows, ``(n,)`` each positive's column among
            them, and ``(n_cand,)`` ``log m_j`` (the logQ correction).
        """
        neg = torch.multinomial(self.q, self.n, replacement=True, generator=self.generator)
        cand, inverse = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        b = float(pos.shape[0])
        mix = (b * self.p[cand] + self.n * self.q[cand]) / (b + self.n)  # (n_cand,)
        return cand, inverse[: pos.shape[0]], torch.log(mix).float()

    def logits(
        self,
        model: RecModel,
        inp: torch.Tensor,
        tgt: torch.Tensor,
        real: torch.Tensor,
        prof: torch.Tensor | None,
        text: torch.Tensor,
        id_rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n_real, n_candidates)`` corrected logits and ``(n_real,)`` candidate labels."""
        cand, labels, log_mix = self.candidates(tgt[real])
        # Item vectors only for the rows this batch touches: candidates and inputs.
        need = torch.unique(torch.cat([cand, inp[inp >= 0]]))
        slot = torch.full((self.n_items + 1,), need.shape[0], dtype=torch.int64, device=inp.device)
        slot[need] = torch.arange(need.shape[0], device=inp.device)
        vecs = model.adapter(text[need], id_rows[need])  # (n_need, dim)
        padded = torch.cat([vecs, vecs.new_zeros(1, self.dim)])  # last row = padding
        seq = padded[slot[torch.where(inp >= 0, inp, self.n_items)]]  # (b, L, dim)
        h = F.normalize(model.sequence(seq, prof)[real], dim=-1)  # (n_real, dim)
        logits = (h @ padded[slot[cand]].T) / self.temperature - log_mix
        return logits, labels
