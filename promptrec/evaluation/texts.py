"""Prompt texts of a dataset's items and users, rendered exactly as the worker renders them."""

from __future__ import annotations

from collections.abc import Sequence

from promptrec.encoder.features import render_fields
from promptrec.encoder.prompts import PromptTemplates
from promptrec.evaluation.datasets import Dataset, ItemRecord

__all__ = ["item_texts", "user_texts"]


def _item_text(prompts: PromptTemplates, name: str, item: ItemRecord, max_chars: int) -> str:
    fields = {"item_id": item.item_id, "title": item.title, "text": item.text}
    return render_fields(prompts, name, fields, item.attributes, max_chars)


def item_texts(
    dataset: Dataset, prompts: PromptTemplates, name: str = "item", max_chars: int = 4000
) -> list[str]:
    """Prompt text of every item, in catalog order (the worker renders the same text)."""
    return [_item_text(prompts, name, item, max_chars) or item.item_id for item in dataset.items]


def user_texts(
    user_ids: Sequence[str],
    dataset: Dataset,
    prompts: PromptTemplates,
    name: str = "user",
    max_chars: int = 4000,
) -> list[str]:
    """Profile prompt text per user ("" for users without a profile)."""
    out = []
    for user in user_ids:
        attributes = dataset.users.get(user)
        if not attributes:
            out.append("")
            continue
        fields = {"user_id": user, "profile": dict(attributes)}
        out.append(render_fields(prompts, name, fields, attributes, max_chars))
    return out
