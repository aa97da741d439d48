"""The FAISS adapters by kind: create an empty index, or restore the kind a snapshot names."""

from __future__ import annotations

from pathlib import Path

from promptrec.index.base import CandidateIndex
from promptrec.index.exceptions import SnapshotError
from promptrec.index.flat import FlatIndex, faiss_gpu_count
from promptrec.index.hnsw import HNSWIndex
from promptrec.index.settings import IndexSettings
from promptrec.index.snapshot import read_snapshot

__all__ = ["FlatIndex", "HNSWIndex", "create_index", "faiss_gpu_count", "restore_index"]

_KINDS: dict[str, type[CandidateIndex]] = {"flat": FlatIndex, "hnsw": HNSWIndex}


def create_index(dim: int, settings: IndexSettings | None = None) -> CandidateIndex:
    """A new empty index of the kind the settings name."""
    settings = settings or IndexSettings()
    return _KINDS[settings.kind](dim, settings)


def restore_index(path: Path, settings: IndexSettings | None = None) -> CandidateIndex:
    """Restore a snapshot with the adapter it was written by (``meta.json`` names it)."""
    meta, _ = read_snapshot(Path(path))
    cls = _KINDS.get(str(meta.get("kind")))
    if cls is None:
        raise SnapshotError(f"{path}: unknown index kind {meta.get('kind')!r}")
    return cls.restore(path, settings)
