"""PNG charts of evaluation results (``--plot FILE``), drawn with the optional matplotlib.

matplotlib is not a dependency of the worker: it comes with the ``plot`` extra
(``pip install 'promptrec[plot]'``, also in ``dev``). The commands call :func:`require_matplotlib`
before any work, so a missing extra fails in a second, not after a long evaluation. The charts
use matplotlib's object API (a :class:`~matplotlib.figure.Figure` with the Agg canvas), which
needs no display and leaves pyplot's global state alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PLOT_EXTRA",
    "PlotUnavailableError",
    "plot_offline",
    "plot_stream",
    "require_matplotlib",
]

PLOT_EXTRA = "pip install 'promptrec[plot]'"
# The stream chart's methods, as in results.json's "stream" section.
_STREAM_METHODS = ("promptrec", "recent-pop")


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed (the ``plot`` extra is missing)."""


def require_matplotlib() -> Any:
    """The :class:`matplotlib.figure.Figure` class.

    Raises:
        PlotUnavailableError: matplotlib cannot be imported; the message names the extra.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailableError(
            f"--plot needs matplotlib, which is not installed ({exc}); it comes with the "
            f"optional 'plot' extra: {PLOT_EXTRA}"
        ) from None
    return Figure


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} is {value!r}, not a number")
    return float(value)


def plot_stream(stream: Mapping[str, Any], path: Path) -> None:
    """HR@10 per time window of ``promptrec`` and ``recent-pop`` (``eval stream``'s section).

    A window in which a method scored no event is a gap in its line.

    Raises:
        PlotUnavailableError: No matplotlib.
        ValueError: No ``windows`` list, or a window whose HR@10 is not a number.
    """
    figure = require_matplotlib()
    windows = stream.get("windows")
    if not isinstance(windows, Sequence) or not windows:
        raise ValueError("stream results have no windows to plot")
    xs = list(range(1, len(windows) + 1))
    fig = figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for method in _STREAM_METHODS:
        ys = []
        for n, window in enumerate(windows, start=1):
            score = window.get(method) if isinstance(window, Mapping) else None
            hr = score.get("HR@10") if isinstance(score, Mapping) else None
            ys.append(math.nan if hr is None else _number(hr, f"window {n} {method} HR@10"))
        ax.plot(xs, ys, marker="o", label=method)
    ax.set_xticks(xs)
    ax.set_xlabel("time window (equal spans of event time)")
    ax.set_ylabel("HR@10")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Prequential HR@10 over {stream.get('events', '?')} events")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_offline(results: Mapping[str, Any], path: Path) -> None:
    """The ``eval offline`` table as grouped bars: one group per metric, one bar per method.

    Raises:
        PlotUnavailableError: No matplotlib.
        ValueError: No methods, or a metric value that is not a number.
    """
    figure = require_matplotlib()
    methods = results.get("methods")
    if not isinstance(methods, Mapping) or not methods:
        raise ValueError("offline results have no methods to plot")
    metrics = list(next(iter(methods.values())))
    if not metrics:
        raise ValueError("offline results have no metrics to plot")
    width = 0.8 / len(methods)
    fig = figure(figsize=(max(7.0, 1.2 * len(metrics)), 5), layout="constrained")
    ax = fig.subplots()
    for n, (method, scores) in enumerate(methods.items()):
        if not isinstance(scores, Mapping):
            raise ValueError(f"method {method!r} has no metrics")
        values = [_number(scores.get(m), f"{method} {m}") for m in metrics]
        offsets = [i + (n - (len(methods) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(offsets, values, width, label=method)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel("score (test targets, full ranking)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Offline leave-one-out: {results.get('dataset', '?')}")
    # Below the axes: above them it would hide the tallest bars.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
