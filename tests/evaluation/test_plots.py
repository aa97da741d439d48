"""``--plot``: PNG charts of the stream and offline results, and the error without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from promptrec.cli.main import main
from promptrec.evaluation.datasets import write_jsonl
from promptrec.evaluation.plots import (
    PlotUnavailableError,
    plot_offline,
    plot_stream,
    require_matplotlib,
)
from tests.encoder.test_training import topic_dataset

PNG = b"\x89PNG\r\n\x1a\n"


def _image(path: Path) -> Any:
    from matplotlib.image import imread

    assert path.read_bytes().startswith(PNG)
    return imread(path)


def _stream() -> dict[str, Any]:
    score = {"HR@10": 0.5, "NDCG@10": 0.3, "events": 4}
    return {
        "events": 12,
        "windows": [
            {"start_ts": 0, "end_ts": 10, "promptrec": score, "recent-pop": score},
            {"start_ts": 10, "end_ts": 20, "promptrec": {**score, "HR@10": 0.75}},  # one method
            {"start_ts": 20, "end_ts": 30},  # no event in this window
        ],
    }


def _offline() -> dict[str, Any]:
    return {
        "dataset": "topics",
        "methods": {
            "promptrec": {"HR@10": 0.9, "NDCG@10": 0.6, "MRR@10": 0.5},
            "pop": {"HR@10": 0.2, "NDCG@10": 0.1, "MRR@10": 0.05},
        },
    }


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib made unimportable, as on an install without the ``plot`` extra."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_stream_plot_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "charts" / "stream.png"  # folders are created
    plot_stream(_stream(), out)
    height, width, _ = _image(out).shape
    assert (width, height) == (700, 400)


def test_offline_plot_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "offline.png"
    plot_offline(_offline(), out)
    height, width, _ = _image(out).shape
    assert (width, height) == (700, 500)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ({}, "no windows to plot"),
        ({"windows": []}, "no windows to plot"),
        ({"windows": [{"promptrec": {"HR@10": "high"}}]}, "window 1 promptrec HR@10 is 'high'"),
    ],
)
def test_bad_stream_results_are_clear_errors(
    tmp_path: Path, stream: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plot_stream(stream, tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({}, "no methods to plot"),
        ({"methods": {}}, "no methods to plot"),
        ({"methods": {"pop": {}}}, "no metrics to plot"),
        ({"methods": {"pop": {"HR@10": 0.1}, "knn": {"HR@10": None}}}, "knn HR@10 is None"),
        ({"methods": {"pop": {"HR@10": 0.1}, "knn": [1]}}, "method 'knn' has no metrics"),
    ],
)
def test_bad_offline_results_are_clear_errors(
    tmp_path: Path, results: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plot_offline(results, tmp_path / "o.png")


def test_missing_matplotlib_names_the_extra(tmp_path: Path, no_matplotlib: None) -> None:
    with pytest.raises(
        PlotUnavailableError, match=r"'plot' extra: pip install 'promptrec\[plot\]'"
    ):
        require_matplotlib()
    with pytest.raises(PlotUnavailableError):
        plot_offline(_offline(), tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("mode", ["offline", "stream"])
def test_cli_fails_before_running_without_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None, mode: str
) -> None:
    # The data folder is empty: had the command started, it would fail on the data (exit 1).
    argv = ["eval", mode, "--data", str(tmp_path), "--format", "jsonl", "--quiet"]
    code = main([*argv, "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"promptrec eval {mode}: error: --plot needs matplotlib" in err
    assert "pip install 'promptrec[plot]'" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_cli_plot_path_that_is_a_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "offline", "--data", str(tmp_path), "--format", "jsonl"]
    assert main([*argv, "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path)]) == 2
    assert "--plot" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_offline_writes_the_bar_chart(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_jsonl(topic_dataset(n_users=8), data)
    out, png = tmp_path / "results.json", tmp_path / "offline.png"
    code = main(
        ["eval", "offline", "--data", str(data), "--format", "jsonl", "--out", str(out),
         "--model-dir", str(tiny_model_dir), "--device", "cpu", "--no-cache", "--quiet",
         "--epochs", "1", "--dim", "8", "--max-len", "4", "--layers", "1", "--no-user-profile",
         "--plot", str(png)]
    )  # fmt: skip
    assert code == 0
    assert f"wrote {png}" in capsys.readouterr().out
    assert out.is_file()
    height, width, _ = _image(png).shape
    assert height == 500 and width == 840  # 7 metrics x 1.2 in at 100 dpi
