"""Prompt rendering shared by the worker and offline training, and cached frozen text vectors.

The worker (:class:`~promptrec.serving.catalog.CatalogUpdater`) and ``promptrec train`` must
produce the same text for the same item, or a trained adapter would see other inputs online;
both go through :func:`render_fields`. Offline, the frozen encoder runs once per distinct text
set: vectors are cached in a safetensors file named by a hash of the model and the texts.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptrec.encoder.checkpoint import load_checkpoint, save_checkpoint
from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.prompts import PromptTemplates
from promptrec.encoder.text_encoder import TextEncoder

__all__ = ["default_cache_dir", "encode_cached", "render_fields"]

log = logging.getLogger(__name__)


def render_fields(
    prompts: PromptTemplates,
    name: str,
    fields: Mapping[str, Any],
    attributes: Mapping[str, Any],
    max_chars: int,
) -> str:
    """Renders template ``name``: event fields win over attributes of the same name."""
    merged = {**attributes, **fields, "attributes": dict(attributes)}
    return prompts.render(name, merged, max_chars=max_chars)


def default_cache_dir() -> Path:
    """``$PROMPTREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/promptrec``, else ``~/.cache/promptrec``."""
    if os.environ.get("PROMPTREC_CACHE_DIR"):
        return Path(os.environ["PROMPTREC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "promptrec"


def encode_cached(
    encoder: TextEncoder, texts: Sequence[str], cache_dir: Path | None, progress: bool = True
) -> np.ndarray:
    """``(n, dim)`` float32 L2-normalised vectors of ``texts``; empty texts give zero rows.

    With ``cache_dir`` the result is read from / written to
    ``cache_dir/text-<sha>.safetensors`` (sha of model, token limit and texts).
    """
    key = f"{encoder.model_dir.name}:{encoder.max_length}"
    if encoder.dtype == "int8":  # approximate vectors never share an entry with exact ones
        key += ":int8"
    digest = hashlib.sha256(key.encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    path = cache_dir / f"text-{digest.hexdigest()[:24]}.safetensors" if cache_dir else None
    if path is not None and path.is_file():
        try:
            tensors, _ = load_checkpoint(path)
            cached = tensors["vectors"].numpy()
            if cached.shape == (len(texts), encoder.dim):
                return cached
        except (CheckpointError, KeyError) as exc:
            log.warning("ignoring unusable text cache %s (%s)", path, exc)
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    rows = [i for i, t in enumerate(texts) if t.strip()]
    if rows:
        from tqdm import tqdm

        step = 256  # texts per progress update
        bar = tqdm(total=len(rows), desc="encode texts", unit="text", disable=not progress)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            out[chunk] = encoder.encode_many([texts[i] for i in chunk])  # (chunk, dim)
            bar.update(len(chunk))
        bar.close()
    if path is not None:
        try:
            save_checkpoint(path, {"vectors": torch.from_numpy(out)}, {"n": len(texts)})
        except CheckpointError as exc:
            log.warning("cannot write text cache %s (%s)", path, exc)
    return out
