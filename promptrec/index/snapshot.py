"""Index snapshots: ``vectors.npy`` + ``meta.json`` in a folder, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptrec.index.exceptions import SnapshotError

__all__ = ["SNAPSHOT_FORMAT", "read_snapshot", "write_snapshot"]

SNAPSHOT_FORMAT = "promptrec-index-v1"


def write_snapshot(
    path: Path,
    kind: str,
    vectors: np.ndarray,
    ids: Sequence[str],
    tags: Sequence[str | None],
    attributes: Sequence[dict[str, list[Any]]] | None,
) -> None:
    """Write the folder atomically (temp dir, then rename); ``attributes`` is optional."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
        meta: dict[str, Any] = {
            "format": SNAPSHOT_FORMAT,
            "kind": kind,
            "dim": int(vectors.shape[1]),
            "ids": list(ids),
            "tags": list(tags),
        }
        if attributes is not None and any(attributes):
            meta["attributes"] = list(attributes)  # absent in older snapshots
        (tmp / "meta.json").write_text(json.dumps(meta))
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapshotError(f"cannot write snapshot {path}: {exc}") from exc


def read_snapshot(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Load and validate a snapshot folder: (meta, (n, dim) float32 vectors)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        vectors = np.load(path / "vectors.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{path} is not a {SNAPSHOT_FORMAT} snapshot")
    ids, tags, dim = meta.get("ids"), meta.get("tags"), meta.get("dim")
    if not isinstance(ids, list) or not isinstance(tags, list) or len(ids) != len(tags):
        raise SnapshotError(f"{path}: ids/tags missing or of different lengths")
    if len(set(ids)) != len(ids):
        raise SnapshotError(f"{path}: duplicate ids")
    attributes = meta.get("attributes")
    if attributes is not None and (
        not isinstance(attributes, list)
        or len(attributes) != len(ids)
        or not all(isinstance(a, dict) for a in attributes)
    ):
        raise SnapshotError(f"{path}: attributes do not match the ids")
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape != (len(ids), dim):
        raise SnapshotError(f"{path}: vectors {vectors.shape} do not match {len(ids)} ids x {dim}")
    return meta, vectors
