"""Checkpoints: safetensors round trip, atomic replace, and refusal of anything else."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from promptrec.encoder import CheckpointError, load_checkpoint, save_checkpoint


class _Exploit:
    """Unpickling this would create a marker file; a safe loader must never do that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, 4, generator=generator),
        "scalar": torch.tensor(2.5),
        "ints": torch.arange(5, dtype=torch.int64),
        "transposed": torch.randn(4, 2, generator=generator).t(),  # not contiguous
    }


def test_round_trip(tmp_path: Path) -> None:
    tensors = _tensors()
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, tensors, {"format": "test-v1", "version": 3, "lr": 0.5, "name": "x"})
    loaded, meta = load_checkpoint(path)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)
        assert loaded[name].dtype == tensor.dtype
    assert meta == {"format": "test-v1", "version": "3", "lr": "0.5", "name": "x"}


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ckpt.safetensors"
    save_checkpoint(path, {"a": torch.zeros(2)}, {"v": 1})
    save_checkpoint(path, {"a": torch.ones(2)}, {"v": 2})
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded["a"], torch.ones(2))
    assert meta["v"] == "2"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.safetensors"]


def test_failed_save_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"a": torch.zeros(2)}, {"v": 1})
    with pytest.raises(CheckpointError, match=r"not a torch\.Tensor"):
        save_checkpoint(path, {"a": [1.0, 2.0]}, {"v": 2})  # type: ignore[dict-item]
    with pytest.raises(CheckpointError, match="metadata key"):
        save_checkpoint(path, {"a": torch.ones(2)}, {3: "x"})  # type: ignore[dict-item]
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded["a"], torch.zeros(2))
    assert meta == {"v": "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_unwritable_target(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(CheckpointError, match="cannot write"):
        save_checkpoint(blocker / "ckpt.safetensors", {"a": torch.zeros(1)}, {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path)


def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError, match="not a valid safetensors file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [0, 4, 8, 40, -3])
def test_truncated_or_tiny_files(tmp_path: Path, cut: int) -> None:
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, _tensors(), {"v": 1})
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_garbage_header(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"{this is not json!!}" + b"\x00" * 16)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
