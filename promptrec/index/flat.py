"""Exact inner-product adapter: FAISS's brute-force kernel on the CPU, ``IndexFlatIP`` on GPUs."""

from __future__ import annotations

import faiss
import numpy as np

from promptrec.index.base import CandidateIndex
from promptrec.index.kernels import scan
from promptrec.index.settings import IndexSettings

__all__ = ["FlatIndex", "faiss_gpu_count"]


def faiss_gpu_count() -> int:
    """GPUs FAISS can use (0 for a CPU-only build)."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


class FlatIndex(CandidateIndex):
    """Exact inner-product search; on the GPU when FAISS has one (``use_gpu=auto``).

    On the CPU it runs FAISS's brute-force kernel (``faiss.knn``: the same blocked BLAS scan as
    ``IndexFlatIP.search``) straight over the numpy rows, so the vectors are held once, not
    twice (measured at 100k x 384: 150 MB less). On the GPU an ``IndexFlatIP`` holds a device
    copy, rebuilt from the rows on the first search after a replacement; filtered searches scan
    the host rows (GPU flat indexes take no IDSelector).
    """

    kind = "flat"

    def __init__(self, dim: int, settings: IndexSettings | None = None) -> None:
        super().__init__(dim, settings)
        self._gpu = self.settings.use_gpu == "auto" and faiss_gpu_count() > 0
        self._index: faiss.Index | None = self._new()

    def _new(self) -> faiss.Index | None:
        if not self._gpu:
            return None
        # Same flat index, same search call: only where it lives changes.
        return faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(self.dim))

    @property
    def device(self) -> str:
        return "cuda" if self._gpu else "cpu"

    @property
    def searches_storage(self) -> bool:
        return not self._gpu

    def _reset_backend(self) -> None:
        if self._index is not None:
            self._index.reset()

    def _add_backend(self, vectors: np.ndarray) -> None:
        if self._index is not None:
            self._index.add(np.ascontiguousarray(vectors))

    @property
    def filters_labels(self) -> bool:
        # GPU flat indexes take no IDSelector; a rebuild there is one host-to-device copy.
        return not self._gpu

    def _search_backend(
        self, queries: np.ndarray, k: int, live: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            # (n, dim) rows in place: a contiguous prefix of the storage matrix, no copy.
            return scan(queries, self._vecs[: len(self._ids)], k)
        scores, labels = self._index.search(queries, k)  # GPU: never has tombstones
        return scores, labels
