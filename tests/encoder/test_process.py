"""EncoderProcess: the child's vectors equal the in-process encoder's, variants, restarts, errors."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.encoder import TextEncoder
from promptrec.encoder.exceptions import EncoderError
from promptrec.encoder.process import EncoderProcess, RemoteEncoder
from promptrec.encoder.settings import EncoderSettings

TEXTS = ["a film about robots", "", "jazz standards, 1959", "x " * 200, "cooking for two"]


def _settings(model_dir: Path) -> EncoderSettings:
    return EncoderSettings(model_dir=model_dir, device="cpu", max_length=64, batch_size=8)


def _tuned_tensors(encoder: TextEncoder) -> dict[str, np.ndarray]:
    """A 'fine-tuned' last layer: the base's tensors, shifted by a seeded perturbation."""
    rng = np.random.default_rng(7)
    state = encoder.model.state_dict()
    names = [n for n in state if n.startswith("encoder.layer.1.output.dense")]
    return {n: state[n].numpy() + rng.normal(0, 0.05, state[n].shape).astype("f4") for n in names}


@pytest.fixture(scope="module")
def tiny_settings(tiny_model_dir: Path) -> EncoderSettings:
    return _settings(tiny_model_dir)


@pytest.fixture(scope="module")
def in_process(tiny_settings: EncoderSettings) -> TextEncoder:
    torch.set_num_threads(1)
    return TextEncoder.from_settings(tiny_settings)


@pytest.fixture(scope="module")
def process(tiny_settings: EncoderSettings, in_process: TextEncoder) -> Iterator[EncoderProcess]:
    proc = EncoderProcess(tiny_settings, threads=1, variants={"tuned": _tuned_tensors(in_process)})
    proc.start()
    yield proc
    proc.close()


def test_vectors_equal_the_in_process_encoder(
    process: EncoderProcess, in_process: TextEncoder
) -> None:
    got = RemoteEncoder(process).encode_many(TEXTS)
    want = in_process.encode_many(TEXTS)
    assert got.shape == (len(TEXTS), in_process.dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert process.dim == in_process.dim


def test_a_variant_is_the_base_with_its_tensors(
    process: EncoderProcess, in_process: TextEncoder
) -> None:
    tensors = _tuned_tensors(in_process)
    want = in_process.with_weights({k: torch.from_numpy(v) for k, v in tensors.items()})
    got = RemoteEncoder(process, "tuned").encode_many(TEXTS)
    np.testing.assert_allclose(got, want.encode_many(TEXTS), rtol=0, atol=1e-6)
    # The tensors changed something: the variant is not the base.
    assert np.abs(got - in_process.encode_many(TEXTS)).max() > 1e-3


def test_empty_input_and_unknown_variant(process: EncoderProcess) -> None:
    assert process.encode_many([]).shape == (0, process.dim)
    with pytest.raises(KeyError, match="nope"):
        process.encode_many(["x"], "nope")


def test_a_bad_text_is_an_error_and_the_child_keeps_serving(process: EncoderProcess) -> None:
    with pytest.raises(EncoderError, match="TypeError"):
        process.encode_many(["fine", 3])  # type: ignore[list-item]
    assert process.encode_many(["fine"]).shape == (1, process.dim)


def test_a_killed_child_is_started_again(process: EncoderProcess, in_process: TextEncoder) -> None:
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    got = process.encode_many(TEXTS[:2])
    assert process.pid not in (None, pid)
    np.testing.assert_allclose(got, in_process.encode_many(TEXTS[:2]), rtol=0, atol=1e-6)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread niceness: Linux")
def test_lower_priority_reaches_every_thread_of_the_child(process: EncoderProcess) -> None:
    process.encode_many(["start torch's threads"])
    pid = process.pid
    assert pid is not None
    start = os.getpriority(os.PRIO_PROCESS, os.getpid())
    process.lower_priority(3)
    process.lower_priority(3)  # does not add up
    nice = {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")}
    assert nice == {min(19, start + 3)}


def test_a_model_that_does_not_load_fails_at_start(tmp_path: Path) -> None:
    proc = EncoderProcess(_settings(tmp_path / "missing"), threads=1)
    with pytest.raises(EncoderError, match="failed to start"):
        proc.start()
    proc.close()


def test_closed_process_refuses_work(tiny_settings: EncoderSettings) -> None:
    proc = EncoderProcess(tiny_settings, threads=1)
    proc.close()
    with pytest.raises(EncoderError, match="closed"):
        proc.encode_many(["x"])
    with pytest.raises(ValueError, match="threads"):
        EncoderProcess(tiny_settings, threads=0)
