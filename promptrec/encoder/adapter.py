"""Item side: a trainable adapter on frozen prompt-wrapped text vectors, plus optional ID vectors.

``item = normalise(adapter(text) + id_embedding[item])``. The adapter maps the frozen encoder's
vector (e.g. 384-d MiniLM) into the recommendation space (e.g. 64-d). Items seen in training
(warm) may add a learned ID vector; unseen (cold) items use row 0 of the ID table, which is fixed
at zero, so they are placed from their text alone. ``id_dropout`` swaps warm items to row 0 at
random during training, so the text path is trained to stand on its own for cold items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ItemAdapter"]


class ItemAdapter(nn.Module):
    """Item vectors in the recommendation space.

    Args:
        text_dim: Width of the frozen text vectors (0: no text path, the ID-only ablation).
        dim: Width of the recommendation space.
        n_ids: Number of warm items with an ID vector (0: no ID path, text only).
        dropout: Dropout inside the adapter MLP.
        id_dropout: Training-time probability of treating a warm item as cold.
    """

    def __init__(
        self, text_dim: int, dim: int, n_ids: int, dropout: float = 0.1, id_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if text_dim <= 0 and n_ids <= 0:
            raise ValueError("an item adapter needs a text path, an ID path, or both")
        self.dim = dim
        self.id_dropout = id_dropout
        self.text: nn.Module | None = None
        if text_dim > 0:
            self.text = nn.Sequential(
                nn.Linear(text_dim, 2 * dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(2 * dim, dim),
            )
        self.ids: nn.Embedding | None = None
        if n_ids > 0:
            self.ids = nn.Embedding(n_ids + 1, dim, padding_idx=0)  # row 0: cold, stays zero
            nn.init.normal_(self.ids.weight, std=0.1)
            with torch.no_grad():
                self.ids.weight[0].zero_()

    def forward(self, text: torch.Tensor, id_rows: torch.Tensor) -> torch.Tensor:
        """Item vectors.

        Args:
            text: ``(n, text_dim)`` frozen text vectors (ignored without a text path).
            id_rows: ``(n,)`` int64 ID-table rows, 0 for cold items.

        Returns:
            ``(n, dim)`` float32, L2-normalised (an item with no signal is a zero row).
        """
        n = id_rows.shape[0]
        out = torch.zeros(n, self.dim, device=id_rows.device)
        if self.text is not None:
            out = out + self.text(text)
        if self.ids is not None:
            rows = id_rows
            if self.training and self.id_dropout > 0:
                drop = torch.rand(n, device=rows.device) < self.id_dropout
                rows = torch.where(drop, torch.zeros_like(rows), rows)
            out = out + self.ids(rows)
        return F.normalize(out, dim=-1)
