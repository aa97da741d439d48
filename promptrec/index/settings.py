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
