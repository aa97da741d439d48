"""FAISS candidate index: one interface, one adapter per backend (flat inner product, HNSW)."""

from __future__ import annotations

from promptrec.index.base import CandidateIndex
from promptrec.index.exceptions import CandidateIndexError, DimensionMismatch, SnapshotError
from promptrec.index.faiss_index import (
    FlatIndex,
    HNSWIndex,
    create_index,
    faiss_gpu_count,
    restore_index,
)
from promptrec.index.filters import AttributeFilter
from promptrec.index.settings import IndexSettings

__all__ = [
    "AttributeFilter",
    "CandidateIndex",
    "CandidateIndexError",
    "DimensionMismatch",
    "FlatIndex",
    "HNSWIndex",
    "IndexSettings",
    "SnapshotError",
    "create_index",
    "faiss_gpu_count",
    "restore_index",
]
