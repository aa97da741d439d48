"""EmbeddedBroker: start/stop, readiness, port conflicts, dying with its parent, pause/resume."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from promptrec.broker.embedded import EmbeddedBroker, free_port
from promptrec.broker.exceptions import EmbeddedBrokerError

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (PID 1 of a container may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_serves_kafka_and_stop_is_idempotent(tmp_path: Path) -> None:
    log_path = tmp_path / "broker.log"
    broker = EmbeddedBroker(log_path=log_path)
    assert not broker.running and broker.pid is None
    with broker:
        assert broker.running
        pid = broker.pid
        assert pid is not None and _alive(pid)
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.url == f"kafka://127.0.0.1:{broker.port}"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, bootstrap_timeout_ms=5000)
        try:
            admin.create_topics({"probe": {"num_partitions": 2, "replication_factor": 1}})
            assert "probe" in admin.list_topics()
        finally:
            admin.close()
    assert not broker.running and broker.pid is None
    assert _wait_until(lambda: not _alive(pid), 5.0)
    assert not _accepts(broker.port)
    broker.stop()  # second stop: no error
    assert log_path.exists() and log_path.stat().st_size > 0  # a given log file is kept


def test_stop_is_quick_with_connected_clients() -> None:
    broker = EmbeddedBroker().start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, bootstrap_timeout_ms=5000)
    try:
        admin.list_topics()  # an open client connection makes a SIGTERMed Tansu linger 5 s
        started = time.monotonic()
        broker.stop(timeout=5)
        assert time.monotonic() - started < 2.0
    finally:
        admin.close()
        broker.stop()


def test_busy_port_fails_fast() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(EmbeddedBrokerError, match="in use"):
            EmbeddedBroker(port=port).start(timeout=10)
        assert time.monotonic() - started < 3.0


def test_second_broker_on_same_port_fails(broker: EmbeddedBroker) -> None:
    other = EmbeddedBroker(port=broker.port)
    with pytest.raises(EmbeddedBrokerError):
        other.start(timeout=5)
    assert not other.running
    assert broker.running  # the first one is untouched


def test_invalid_port_rejected() -> None:
    with pytest.raises(EmbeddedBrokerError):
        EmbeddedBroker(port=70000)


def test_child_dies_when_parent_is_killed() -> None:
    code = (
        "import time\n"
        "from promptrec.broker.embedded import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, b.port, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "parent did not start a broker"
        pid, port = (int(x) for x in line.split())
        assert _alive(pid) and _accepts(port)
        os.kill(parent.pid, signal.SIGKILL)  # no atexit, no finally: only PDEATHSIG can help
        parent.wait(timeout=5)
        assert _wait_until(lambda: not _alive(pid), 5.0), "broker outlived its parent"
        assert not _accepts(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_pause_resume_and_stop_while_paused() -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    assert pid is not None
    try:
        broker.pause()
        assert _wait_until(lambda: _state(pid) == "T", 2.0)
        broker.resume()
        assert _wait_until(lambda: _state(pid) != "T", 2.0)
        broker.pause()
        started = time.monotonic()
        broker.stop(timeout=5)  # SIGTERM must still work on a stopped process
        assert time.monotonic() - started < 4.0
        assert _wait_until(lambda: not _alive(pid), 2.0)
    finally:
        broker.stop()
    with pytest.raises(EmbeddedBrokerError):
        broker.pause()
