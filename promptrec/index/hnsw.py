"""Approximate adapter: FAISS ``IndexHNSWFlat`` (inner product) on the CPU."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from promptrec.index.base import CandidateIndex
from promptrec.index.kernels import bitmap_selector
from promptrec.index.settings import IndexSettings

__all__ = ["HNSWIndex"]

# The search-parameter classes are missing from FAISS's type stubs.
_faiss: Any = faiss


class HNSWIndex(CandidateIndex):
    """Approximate graph search (``IndexHNSWFlat``, inner product) on the CPU.

    HNSW cannot delete: a replaced or removed item's old node stays in the graph (it still helps
    navigation) and is filtered out of results; the graph is rebuilt only when such dead nodes
    outnumber the live ones. Appends are incremental.
    """

    kind = "hnsw"

    def __init__(self, dim: int, settings: IndexSettings | None = None) -> None:
        super().__init__(dim, settings)
        self._index = self._new()

    def _new(self) -> faiss.Index:
        index = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = self.settings.hnsw_ef_search
        index.hnsw.efConstruction = max(40, self.settings.hnsw_ef_search)
        return index

    def _reset_backend(self) -> None:
        self._index = self._new()

    def _add_backend(self, vectors: np.ndarray) -> None:
        self._index.add(np.ascontiguousarray(vectors))

    def _search_backend(
        self, queries: np.ndarray, k: int, live: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        ef = max(self.settings.hnsw_ef_search, k)
        if live is None:
            params = _faiss.SearchParametersHNSW(efSearch=ef)
        else:
            params = _faiss.SearchParametersHNSW(sel=bitmap_selector(live), efSearch=ef)
        scores, labels = self._index.search(queries, k, params=params)
        return scores, labels
