"""Shared helpers of the benchmarks: percentiles, tables, JSON, machine facts, /proc probes."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Stopwatch",
    "cpu_seconds",
    "machine",
    "now_ms",
    "percentiles",
    "print_table",
    "rss_bytes",
    "start_profiler",
    "stop_profiler",
    "write_json",
]


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (the unit of every event ``ts``)."""
    return int(time.time() * 1000)


def percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """``n``, mean, p50, p95, p99 and max of ``values`` (NaN when empty)."""
    import numpy as np  # lazy: `promptrec --help` imports this module

    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(arr.max()),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned plain-text table (floats with up to 3 significant decimals)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def machine() -> dict[str, Any]:
    """Facts about the machine a result came from (CPU model, cores, memory, load, versions)."""
    facts: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["mem_gb"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import faiss

        facts["faiss"] = faiss.__version__
    except ImportError:
        pass
    return facts


def write_json(path: Path | str | None, benchmark: str, result: dict[str, Any]) -> None:
    """Write ``{"benchmark", "machine", "created_at", **result}`` to ``path`` (no-op for None)."""
    if path is None:
        return
    doc = {"benchmark": benchmark, "created_at": time.time(), "machine": machine(), **result}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; fields after the closing parenthesis are fixed.
    fields = raw.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> tuple[int, int]:
    """``(current, peak)`` resident set size of a process in bytes (VmRSS, VmHWM)."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in values:
            values[key] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


def start_profiler(pid: int, path: Path, idle: bool = False) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` on ``pid`` writing ``path`` (SVG flame graph, else raw stacks).

    ``idle``: also sample threads that wait (where a latency-bound loop spends its time).
    """
    # The venv's bin folder first: it is not on PATH when promptrec is run as .venv/bin/promptrec.
    exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if exe is None:
        print("py-spy not found (pip install py-spy); no profile")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # .svg: flame graph; anything else: collapsed stacks ("raw"), one line per stack and count.
    fmt = "flamegraph" if path.suffix == ".svg" else "raw"
    cmd = [exe, "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--threads"]
    cmd += ["--format", fmt, "-o", str(path)] + (["--idle"] if idle else [])
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a :func:`start_profiler` process; py-spy writes its file then."""
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes the file on SIGINT
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode not in (0, -signal.SIGINT):
        print(f"py-spy exited {proc.returncode}: {err.decode()[-500:]}")


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
