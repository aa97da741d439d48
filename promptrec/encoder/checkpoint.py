"""Atomic safetensors checkpoints with string metadata.

Only the safetensors format is read or written: loading never unpickles anything, so a checkpoint
file from an untrusted place cannot run code. Writes go to a temporary file in the target folder,
are fsynced, then renamed over the target, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from promptrec.encoder.exceptions import CheckpointError

__all__ = ["load_checkpoint", "save_checkpoint"]

_HEADER_BYTES = 8  # safetensors files start with a little-endian u64 header length


def save_checkpoint(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str | int | float]
) -> None:
    """Writes ``tensors`` and ``metadata`` to ``path`` atomically.

    Args:
        path: Target file; its folder is created if needed.
        tensors: Name -> tensor; tensors are copied to CPU and made contiguous.
        metadata: Stored in the safetensors header; non-string values are JSON-encoded.

    Raises:
        CheckpointError: A tensor or metadata value is invalid, or the file cannot be written.
    """
    path = Path(path)
    header: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise CheckpointError(f"checkpoint {path}: metadata key {key!r} is not a string")
        header[key] = value if isinstance(value, str) else json.dumps(value)
    cpu: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: {name!r} is not a torch.Tensor")
        cpu[name] = tensor.detach().to("cpu").contiguous()
    try:
        payload = safetensors_save(cpu, metadata=header)
    except Exception as exc:  # safetensors raises ValueError/SafetensorError for bad tensors
        raise CheckpointError(f"checkpoint {path}: cannot serialise: {exc}") from exc

    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot write: {exc}") from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable; best effort (not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Reads a checkpoint written by :func:`save_checkpoint` (or any safetensors file).

    Returns:
        ``(tensors, metadata)``; metadata values are the stored strings (JSON-decode as needed).

    Raises:
        CheckpointError: The file is missing, unreadable, or not a valid safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot read: {exc}") from exc
    if size < _HEADER_BYTES:
        raise CheckpointError(f"checkpoint {path} is not a safetensors file: only {size} bytes")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # SafetensorError, OSError, ...: any failure means unreadable
        raise CheckpointError(f"checkpoint {path} is not a valid safetensors file: {exc}") from exc
    return tensors, metadata
