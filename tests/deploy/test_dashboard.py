"""The committed Grafana dashboard is the generator's output, and its queries name real metrics.

No Prometheus here (tests/deploy/test_dashboard_prometheus.py runs every query against a real one):
these checks run everywhere and fail first when someone edits the JSON by hand or a panel names a
metric that no worker exports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from promptrec.observability.metrics import Metrics
from promptrec.observability.panels import PanelSpec, Query, RowSpec, rows, standard_rows
from tests.deploy.conftest import DEPLOY, ROOT
from tests.deploy.test_dashboard_prometheus import METRIC_NAME, PENDING_METRICS

pytest.importorskip(
    "grafana_foundation_sdk",
    reason="grafana-foundation-sdk is in the dev extra: pip install -e '.[dev]' (make install)",
)

from promptrec.observability.dashboard import (
    DASHBOARD_PATH,
    build_dashboard,
    main,
    render,
)

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "promptrec.json"


def _sample_names(family_type: str, name: str) -> set[str]:
    """The sample names Prometheus stores for one metric family."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "info": ("_info",),
    }.get(family_type, ("",))
    return {name + suffix for suffix in suffixes}


def exported_metric_names(registry: CollectorRegistry | None = None) -> set[str]:
    """Every sample name a worker's metrics registry can export (labelled or not)."""
    registry = registry or Metrics().registry
    names: set[str] = set()
    for family in registry.collect():
        names |= _sample_names(family.type, family.name)
    return names


def queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of a dashboard JSON document."""
    return [(p["title"], t["expr"]) for p in document["panels"] for t in p.get("targets", [])]


def test_committed_dashboard_is_the_generators_output() -> None:
    assert DASHBOARD == ROOT / DASHBOARD_PATH
    # Byte for byte: a hand edit of the JSON fails here (regenerate with `make dashboard`).
    assert DASHBOARD.read_text(encoding="utf-8") == render()
    assert main(["--check", str(DASHBOARD)]) == 0


def test_rows_panels_ids_and_layout() -> None:
    document = json.loads(render())
    panels = document["panels"]
    titles = [p["title"] for p in panels if p["type"] == "row"]
    assert titles == [
        "Traffic",
        "Latency",
        "Quality",
        "State",
        "Health",
        "Partition stalls",
        "Experiment arms",
    ]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    assert document["uid"] == "promptrec-main"
    assert [v["name"] for v in document["templating"]["list"]] == ["datasource", "instance"]
    # No two panels overlap on Grafana's 24-column grid, and none sticks out on the right.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        own = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not own & cells, f"{panel['title']} overlaps another panel"
        cells |= own
    stalls = next(p for p in panels if p["title"].startswith("Partition stalls ("))
    assert [t["expr"] for t in stalls["targets"]] == [
        'sum by (topic, partition) (increase(promptrec_partition_stalls_total{instance=~"$instance"}[5m]))'
    ]
    # Every query filters on the dashboard's worker picker.
    for title, expr in queries(document):
        assert 'instance=~"$instance"' in expr, title


def test_every_panel_query_names_a_metric_the_worker_exports() -> None:
    exported = exported_metric_names()
    assert "promptrec_events_total" in exported and "promptrec_worker_info" in exported
    used: set[str] = set()
    for title, expr in queries(json.loads(render())):
        names = set(METRIC_NAME.findall(expr))
        assert names or expr.startswith("up{"), f"{title}: no promptrec metric in {expr}"
        unknown = names - exported - PENDING_METRICS
        assert not unknown, f"panel {title!r} uses {sorted(unknown)}, which no worker exports"
        used |= names
    # A pending metric that the dashboard no longer uses, or that now exists, is stale.
    assert used >= PENDING_METRICS
    assert not PENDING_METRICS & exported, "the metric exists now: remove it from PENDING_METRICS"


def test_a_metric_name_typo_is_caught() -> None:
    # The check above can fail: a misspelt metric is not in the registry's names.
    exported = exported_metric_names()
    assert "promptrec_event_total" not in exported
    assert "promptrec_stage_seconds_bucket" in exported
    assert "promptrec_stage_seconds" not in exported  # a histogram is only _bucket/_sum/_count


def test_generator_extends_with_more_rows() -> None:
    extra = RowSpec(
        "Arm A",
        (
            PanelSpec(
                "Arm A events", "Events of arm A.", (Query('up{instance=~"$instance"}', "x"),)
            ),
        ),
    )
    document = json.loads(render([*standard_rows(), extra]))
    last = document["panels"][-2:]
    assert [p["title"] for p in last] == ["Arm A", "Arm A events"]
    assert last[1]["gridPos"]["y"] == last[0]["gridPos"]["y"] + 1


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([RowSpec("R", (PanelSpec("p", "d", ()),))], "needs 1 to 26 queries"),
        ([RowSpec("R", (PanelSpec("p", "d", (Query("up", "x"),), width=25),))], "width 25"),
        ([RowSpec("R", (PanelSpec("p", "d", (Query("up", "x"),), width=0),))], "width 0"),
        (
            [RowSpec("R", (PanelSpec("p", "d", (Query("up", "x"),)),) * 2)],
            "two panels are titled 'p'",
        ),
    ],
)
def test_bad_panel_specs_are_clear_errors(specs: list[RowSpec], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_dashboard(specs)


def test_arm_row_compares_every_arm_or_the_named_ones() -> None:
    assert rows() == standard_rows()
    every = standard_rows()[-1]
    assert every.title == "Experiment arms"
    assert all("by (arm)" in q.expr for p in every.panels for q in p.queries)
    named = rows(["control", "treatment"])
    assert named[:-1] == standard_rows()[:-1]
    exprs = [q.expr for p in named[-1].panels for q in p.queries]
    assert exprs and all('arm=~"control|treatment"' in e for e in exprs)


def test_check_mode_reports_a_stale_or_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "promptrec.json"
    stale.write_text(render().replace("Traffic", "Trafic"), encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert "out of date; run `make dashboard`" in capsys.readouterr().err
    assert main(["--check", str(tmp_path / "nope.json")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    out = tmp_path / "sub" / "d.json"
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()


def test_missing_sdk_names_the_dev_extra() -> None:
    # A fresh interpreter in which the SDK cannot be imported, as on a worker-only install.
    code = (
        "import sys; sys.modules['grafana_foundation_sdk'] = None; "
        "import promptrec.observability.dashboard"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 1
    assert "needs grafana-foundation-sdk" in result.stderr
    assert "pip install -e '.[dev]'" in result.stderr
