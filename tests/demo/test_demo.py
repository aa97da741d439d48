"""``promptrec demo`` (what ``make run`` starts): recommendations flow, Ctrl-C leaves no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptrec.broker.embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _default_sigint() -> None:
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt: give the child the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _demo(state: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "promptrec", "demo", "--state-dir", str(state),
        "--metrics-port", str(free_port()), "--port", str(free_port()), *args,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def _orphans(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (the demo's state dir or port)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def test_demo_prints_recommendations_and_exits(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--events", "40", "--rate", "40")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "done: 40 recommendations" in out, out
    assert out.count(" <- ") >= 40
    time.sleep(0.5)
    assert not _orphans(str(tmp_path))


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--rate", "20")
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if " <- " in line:
            break
    else:
        proc.kill()
        raise AssertionError("no recommendation printed:\n" + "".join(lines))
    broker_port = next(
        line.split("127.0.0.1:")[1].split(";")[0] for line in lines if "broker ready" in line
    )
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    time.sleep(0.5)
    assert not _orphans(str(tmp_path)), "worker left running"
    assert not _orphans(f"127.0.0.1:{broker_port}"), "broker left running"
