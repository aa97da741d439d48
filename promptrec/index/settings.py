"""Index settings: which FAISS backend, and whether to use a GPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["IndexSettings"]


class IndexSettings(BaseSettings):
    """Settings of the ``promptrec.index`` package (env prefix ``PROMPTREC_INDEX_``)."""

    model_config = SettingsConfigDict(env_prefix="PROMPTREC_INDEX_", extra="ignore")

    kind: Literal["flat", "hnsw"] = Field(
        default="flat", description="flat: exact inner product; hnsw: approximate graph index."
    )
    use_gpu: Literal["auto", "never"] = Field(
        default="auto", description="auto moves flat indexes to the GPU when FAISS has GPUs."
    )
    hnsw_m: int = Field(default=32, ge=4, le=256, description="HNSW graph degree.")
    hnsw_ef_search: int = Field(default=128, ge=8, description="HNSW search breadth.")
    filter_exact_rows: int = Field(
        default=20_000,
        ge=0,
        description=(
            "Filtered HNSW searches that leave at most this many items scan them exactly "
            "(a graph search finds too few of a small allowed set)."
        ),
    )
    filter_attributes: str = Field(
        default="",
        description=(
            "Comma-separated item attribute keys that requests may filter on (empty: every key)."
        ),
    )

    @property
    def filter_key_set(self) -> frozenset[str] | None:
        """The filterable attribute keys, or None for every key."""
        keys = frozenset(k.strip() for k in self.filter_attributes.split(",") if k.strip())
        return keys or None
