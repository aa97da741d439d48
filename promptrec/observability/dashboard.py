"""The Grafana dashboard ``deploy/grafana/dashboards/promptrec.json``, generated from code.

The committed JSON is this module's output (``make dashboard``; a test compares the two), so a
change to the dashboard is a change here. The panels are plain data
(:mod:`promptrec.observability.panels`) turned into Grafana JSON by the official
grafana-foundation-sdk (an optional dependency, in the ``dev`` extra; the worker never imports
this module). Panels are laid out left to right, wrapping at Grafana's 24 columns, each row below
the previous one.

Extending it: a per-experiment-arm row is one more :class:`~promptrec.observability.panels.RowSpec`
per arm from :func:`~promptrec.observability.panels.rows`; this module needs no change for that.

Usage::

    python -m promptrec.observability.dashboard --out deploy/grafana/dashboards/promptrec.json
    python -m promptrec.observability.dashboard --check deploy/grafana/dashboards/promptrec.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    from grafana_foundation_sdk.builders import dashboard as gd
    from grafana_foundation_sdk.builders import prometheus as gp
    from grafana_foundation_sdk.builders import stat as gstat
    from grafana_foundation_sdk.builders import table as gtable
    from grafana_foundation_sdk.builders import timeseries as gts
    from grafana_foundation_sdk.builders.common import VizLegendOptions, VizTooltipOptions
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as gc
    from grafana_foundation_sdk.models import dashboard as gm
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat
except ModuleNotFoundError as exc:  # the SDK is a dev dependency, not the worker's
    raise ModuleNotFoundError(
        f"the dashboard generator needs grafana-foundation-sdk ({exc}); it is in the dev extra: "
        "pip install -e '.[dev]' (make install)",
        name=exc.name,
    ) from None

from promptrec.observability.panels import PanelSpec, Query, RowSpec, rows

__all__ = ["DASHBOARD_PATH", "UID", "build_dashboard", "main", "render"]

UID = "promptrec-main"
# Where the committed dashboard lives, relative to the repository root.
DASHBOARD_PATH = Path("deploy/grafana/dashboards/promptrec.json")
_DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
_REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _target(query: Query, ref_id: str, instant: bool) -> gp.Dataquery:
    target = (
        gp.Dataquery()
        .datasource(_DATASOURCE)
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref_id)
    )
    return target.instant().format(PromQueryFormat.TABLE) if instant else target.range()


def _panel(spec: PanelSpec, panel_id: int) -> gts.Panel | gstat.Panel | gtable.Panel:
    panel: gts.Panel | gstat.Panel | gtable.Panel
    if spec.kind == "timeseries":
        panel = (
            gts.Panel()
            .legend(
                VizLegendOptions()
                .display_mode(gc.LegendDisplayMode.TABLE)
                .placement(gc.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                VizTooltipOptions().mode(gc.TooltipDisplayMode.MULTI).sort(gc.SortOrder.DESCENDING)
            )
        )
    elif spec.kind == "stat":
        panel = gstat.Panel()
    else:
        panel = gtable.Panel()
    panel = (
        panel.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_DATASOURCE)
        .unit(spec.unit)
        .height(8)
        .span(spec.width)
    )
    if spec.min is not None:
        panel = panel.min(spec.min)
    if spec.max is not None:
        panel = panel.max(spec.max)
    for ref_id, query in zip(_REF_IDS, spec.queries, strict=False):
        panel = panel.with_target(_target(query, ref_id, instant=spec.kind == "table"))
    return panel


def _check(specs: Sequence[RowSpec]) -> None:
    titles: set[str] = set()
    for row in specs:
        for spec in row.panels:
            if not spec.queries or len(spec.queries) > len(_REF_IDS):
                raise ValueError(f"panel {spec.title!r} needs 1 to {len(_REF_IDS)} queries")
            if not 1 <= spec.width <= 24:
                raise ValueError(f"panel {spec.title!r}: width {spec.width} is not in 1..24")
            if spec.title in titles:
                raise ValueError(f"two panels are titled {spec.title!r}")
            titles.add(spec.title)


def build_dashboard(specs: Sequence[RowSpec] | None = None) -> gd.Dashboard:
    """The dashboard builder for ``specs`` (default: :func:`rows`).

    Raises:
        ValueError: A panel without queries, a width outside 1..24 or a repeated title.
    """
    specs = rows() if specs is None else specs
    _check(specs)
    board = (
        gd.Dashboard("promptrec")
        .uid(UID)
        .description(
            "promptrec streaming recommender: traffic, latency, quality, state and health of "
            "the workers."
        )
        .tags(["promptrec", "kafka"])
        .editable()
        .tooltip(gm.DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("")
        .version(1)
        .annotations([])
        .with_variable(gd.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            gd.QueryVariable("instance")
            .label("Worker")
            .datasource(_DATASOURCE)
            .query("label_values(promptrec_worker_info, instance)")
            .include_all(True)
            .multi(True)
            .all_value(".*")
            .current(gm.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .refresh(gm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(gm.VariableSort.ALPHABETICAL_ASC)
        )
    )
    panel_id = 0
    for row in specs:
        panel_id += 1
        board = board.with_row(gd.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            board = board.with_panel(_panel(spec, panel_id))
    return board


def render(specs: Sequence[RowSpec] | None = None) -> str:
    """The dashboard JSON text, as committed (sorted keys, 2-space indent, final newline)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build_dashboard(specs).build()) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboard (``--out``) or check that a file is up to date (``--check``)."""
    parser = argparse.ArgumentParser(
        prog="python -m promptrec.observability.dashboard",
        description="Generate the promptrec Grafana dashboard JSON.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=Path, help="write the dashboard here")
    group.add_argument("--check", type=Path, help="exit 1 if this file differs from the output")
    args = parser.parse_args(argv)
    text = render()
    if args.check is not None:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"dashboard: error: cannot read {args.check}: {exc.strerror}", file=sys.stderr)
            return 1
        if current != text:
            print(f"dashboard: {args.check} is out of date; run `make dashboard`", file=sys.stderr)
            return 1
        return 0
    if args.out is None:
        sys.stdout.write(text)
        return 0
    if args.out.is_dir():
        print(f"dashboard: error: --out {args.out} is a folder", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
