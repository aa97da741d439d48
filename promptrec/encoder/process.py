"""Catalog text encoding in a child process, so the worker's event loop keeps its interpreter.

Measured in round 4 (README, "Round 4 performance"): the encoder on a thread inside the worker ran
at about half the texts/s of ``promptrec bench encoder``, and setting more torch threads changed
nothing. The asyncio thread and the encoding thread handed the GIL back and forth (71,884 futex
calls in 3 s), and the event loop thread spent its time in ``epoll`` wake-ups. In a child process
the encoder holds its own GIL. The worker's catalog thread sends the texts down a pipe and waits
on it without holding the GIL.

The child loads the same model from the same :class:`EncoderSettings` (nothing is downloaded).
It also loads every *variant* it is given: the base encoder with a fine-tuned checkpoint's tensors
(:meth:`TextEncoder.with_weights`). So its vectors are the ones the worker's own encoder would
give. ``tests/encoder/test_process.py`` checks that they are equal.
A child that dies (killed, out of memory) is started again once per call. If it dies again, the
call raises :class:`~promptrec.encoder.exceptions.EncoderError`, and the catalog stage
dead-letters that batch with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from promptrec.encoder.exceptions import EncoderError
from promptrec.encoder.settings import EncoderSettings

__all__ = ["EncoderProcess", "RemoteEncoder"]

log = logging.getLogger(__name__)

BASE = ""  # the variant name of the untuned encoder


class EncoderProcess:
    """One child process that encodes texts with the base encoder or one of its variants.

    Args:
        settings: What the child loads (model folder, device, precision, batch size...).
        threads: torch threads in the child (its whole CPU budget for encoding).
        variants: Variant name -> state-dict tensors (name -> array) that replace the base
            model's: a fine-tuned checkpoint's encoder.
        start_timeout_s: How long the child may take to import torch and load the model.

    Calls are serialised (one request on the pipe at a time); the object may be shared between
    threads and between engines (experiment arms).
    """

    def __init__(
        self,
        settings: EncoderSettings,
        threads: int,
        variants: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._settings = settings
        self._threads = threads
        self._variants = {k: dict(v) for k, v in (variants or {}).items()}
        self._timeout = start_timeout_s
        self._lock = threading.Lock()
        self._nice = 0
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._dim = 0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id; None before it is started or after it ended."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    @property
    def dim(self) -> int:
        """Width of the vectors (starts the child when it is not running)."""
        with self._lock:
            self._ensure()
            return self._dim

    def start(self) -> None:
        """Start the child and wait until its model is loaded (else the first call does)."""
        with self._lock:
            self._ensure()

    def lower_priority(self, nice: int) -> None:
        """From now on the child runs ``nice`` steps below the priority it started with.

        It cannot go back (raising priority needs privileges), and repeated calls do not add up.

        Applied by the child to each of its threads (Linux niceness is per thread), so torch's
        workers run at that priority too; ignored where it is not permitted.
        """
        with self._lock:
            self._nice = max(self._nice, int(nice))
            if self._conn is not None:
                try:
                    self._request(("nice", self._nice))
                except (EOFError, OSError):  # dead: the next start applies it
                    self._stop_child()

    def encode_many(self, texts: Sequence[str], variant: str = BASE) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit rows from the child.

        Raises:
            EncoderError: The child failed to encode them or died twice.
            KeyError: ``variant`` was not given to the constructor.
        """
        if variant != BASE and variant not in self._variants:
            raise KeyError(f"unknown encoder variant {variant!r}")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._ensure()
                    out = self._request(("encode", variant, texts))
                except (EOFError, OSError, BrokenPipeError) as exc:
                    log.warning("encoder process died (%s); starting it again", exc)
                    self._stop_child()
                    if attempt == 2:
                        raise EncoderError(f"encoder process died twice: {exc}") from exc
                    continue
                assert isinstance(out, np.ndarray)
                return out
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the child (idempotent)."""
        with self._lock:
            self._closed = True
            self._stop_child()

    def _ensure(self) -> None:
        if self._closed:
            raise EncoderError("the encoder process was closed")
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            return
        self._stop_child()
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and torch
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve,
            args=(child, self._settings.model_dump(), self._threads, self._variants, self._nice),
            name="promptrec-encoder",
            daemon=True,
        )
        proc.start()
        child.close()
        self._conn, self._proc = parent, proc
        if not parent.poll(self._timeout):
            self._stop_child()
            raise EncoderError(f"encoder process did not load its model in {self._timeout:.0f} s")
        status, value = parent.recv()
        if status != "ready":
            self._stop_child()
            raise EncoderError(f"encoder process failed to start: {value}")
        self._dim = int(value)
        log.info("encoder process %d ready (%d threads, dim %d)", proc.pid, self._threads, value)

    def _request(self, message: tuple[Any, ...]) -> Any:
        assert self._conn is not None
        self._conn.send(message)
        status, value = self._conn.recv()
        if status == "error":
            raise EncoderError(f"encoder process: {value}")
        return value

    def _stop_child(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
            conn.close()
        if proc is not None:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


class RemoteEncoder:
    """One variant of an :class:`EncoderProcess` with the ``encode_many`` of a TextEncoder."""

    def __init__(self, process: EncoderProcess, variant: str = BASE) -> None:
        self.process = process
        self.variant = variant

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit rows (see :meth:`EncoderProcess.encode_many`)."""
        return self.process.encode_many(texts, self.variant)


def _serve(
    conn: Connection,
    settings_dump: dict[str, Any],
    threads: int,
    variants: Mapping[str, Mapping[str, np.ndarray]],
    nice: int,
) -> None:
    """The child: load, answer requests until told to stop or the parent goes away."""
    try:
        import torch

        from promptrec.encoder.text_encoder import TextEncoder

        torch.set_num_threads(threads)
        settings = EncoderSettings.model_validate(settings_dump)
        base = TextEncoder.from_settings(settings)
        encoders = {BASE: base}
        for name, tensors in variants.items():
            encoders[name] = base.with_weights({k: torch.from_numpy(v) for k, v in tensors.items()})
        start = _niceness()
        _renice(start, nice)
        conn.send(("ready", base.dim))
    except BaseException as exc:  # the parent reports it; nothing else can
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        kind = message[0]
        if kind == "stop":
            return
        try:
            if kind == "nice":
                _renice(start, int(message[1]))
                reply: Any = None
            else:
                _, variant, texts = message
                reply = encoders[variant].encode_many(texts)
            conn.send(("ok", reply))
        except Exception as exc:  # a bad request must not end the child
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0


def _renice(start: int, nice: int) -> None:
    """Put every thread of this process at ``start + nice`` (no-op at 0 or where not permitted)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    target = min(19, start + nice)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]  # 0: the calling thread
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:
            pass
