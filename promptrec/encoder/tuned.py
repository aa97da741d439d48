"""A fine-tuned checkpoint's text encoder, for the worker (no ``peft`` needed).

``promptrec train --finetune-encoder`` (:mod:`promptrec.encoder.finetune`) stores the encoder
tensors that changed, with the base model's identity: its folder name and
:func:`model_fingerprint`. :func:`tuned_text_encoder` checks them against the worker's base
encoder and returns the base with those tensors, or raises :class:`CheckpointError` saying why
they do not fit.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from promptrec.encoder.exceptions import CheckpointError
from promptrec.encoder.text_encoder import TextEncoder

if TYPE_CHECKING:
    from promptrec.encoder.model import RecModel

__all__ = ["model_fingerprint", "tuned_text_encoder"]

log = logging.getLogger(__name__)

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def model_fingerprint(model_dir: Path) -> str:
    """sha256 (24 hex) of a model folder's config.json and weight files: the base's identity.

    Read from the files, not the loaded weights, so a worker running the same model in fp16 on
    CUDA has the same fingerprint as the float32 trainer.
    """
    folder = Path(model_dir)
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    files = [folder / "config.json", *sorted(p for p in weights if p.is_file())]
    stat = folder.stat()
    key = (str(folder.resolve()), stat.st_mtime_ns, sum(p.stat().st_size for p in files))
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\x00")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _FINGERPRINTS[key] = digest.hexdigest()[:24]
    return _FINGERPRINTS[key]


def tuned_text_encoder(model: RecModel, base: TextEncoder) -> TextEncoder | None:
    """The worker's item encoder: ``base`` with the checkpoint's tuned tensors, or None.

    Raises:
        CheckpointError: The tensors were tuned from another base model, are missing, unknown
            to the base, of another shape, or not finite.
    """
    meta, weights = model.text_encoder_meta, model.text_encoder_weights
    if meta is None:
        return None
    where = f"checkpoint (tuned encoder, {meta.get('mode')})"
    want = (meta.get("base_model"), meta.get("base_fingerprint"))
    have = (base.model_dir.name, model_fingerprint(base.model_dir))
    if want != have:
        raise CheckpointError(
            f"{where} was tuned from encoder {want[0]} ({want[1]}); the worker runs {have[0]} "
            f"({have[1]}): its encoder tensors do not fit"
        )
    state = base.model.state_dict()
    for name, tensor in weights.items():
        if name not in state:
            raise CheckpointError(f"{where}: tensor {name!r} is not in the base model")
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(tensor.shape)}, the base model "
                f"{tuple(state[name].shape)}"
            )
        if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{where}: tensor {name!r} is not finite floating point")
    log.info("item encoder: %s + %d tuned tensors (%s)", have[0], len(weights), meta.get("mode"))
    return base.with_weights(copy.copy(weights))
