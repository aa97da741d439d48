"""What the Grafana dashboard shows: rows, panels and their PromQL, as plain data.

:mod:`promptrec.observability.dashboard` turns these specs into Grafana JSON; this module needs no
Grafana SDK, so tests (and a future generator of the README's panel table) can read the queries
directly. Every query filters on the dashboard's ``$instance`` variable (the workers shown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["PanelSpec", "Query", "RowSpec", "rows", "standard_rows"]

# The instance filter every query carries, and Grafana's rate window.
_I = '{instance=~"$instance"}'
_W = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel.

    Attributes:
        expr: The PromQL expression (Grafana variables such as ``$instance`` allowed).
        legend: Grafana legend template, e.g. ``{{topic}} {{outcome}}``.
    """

    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """One panel: what it shows and how wide it is (height is always 8 grid units).

    Attributes:
        title: Panel title, unique in the dashboard (the Prometheus test reports by title).
        description: The panel's tooltip text: what the numbers mean.
        queries: Its targets, in order (ref ids A, B, ... follow this order).
        unit: Grafana unit id (``ops``, ``s``, ``bytes``, ``short``, ...).
        width: Grid columns out of 24.
        kind: ``timeseries``, ``stat`` or ``table`` (a table runs its query as an instant query).
        min: Lower end of the value axis (None: automatic).
        max: Upper end of the value axis (None: automatic).
    """

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 8
    kind: Literal["timeseries", "stat", "table"] = "timeseries"
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class RowSpec:
    """A dashboard row: a title and the panels under it, laid out left to right."""

    title: str
    panels: tuple[PanelSpec, ...]


def _rate(metric: str, by: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum"
    return f"{grouping}(rate({metric}{_I}{_W}))"


def _quantile(q: str, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{_I}{_W})))"


def _increase(metric: str, by: str) -> str:
    return f"sum by ({by}) (increase({metric}{_I}{_W}))"


def _p(title: str, description: str, *queries: tuple[str, str], **options: Any) -> PanelSpec:
    """A panel of ``(expr, legend)`` queries (the options are :class:`PanelSpec`'s)."""
    return PanelSpec(
        title, description, tuple(Query(e, legend) for e, legend in queries), **options
    )


def _traffic() -> RowSpec:
    batch_mean = (
        f"{_rate('promptrec_batch_size_sum', 'agent')} / "
        f"{_rate('promptrec_batch_size_count', 'agent')}"
    )
    return RowSpec(
        "Traffic",
        (
            _p(
                "Events consumed by topic and outcome",
                "Input records per second: ok, dead_letter (bad input or failed stage) and "
                "skipped (catalog record whose prompt text is unchanged, not re-encoded).",
                (_rate("promptrec_events_total", "topic, outcome"), "{{topic}} {{outcome}}"),
                unit="ops",
            ),
            _p(
                "Dead letters by topic and reason",
                "Records sent to the dead-letter topic per second, by source topic and reason "
                "code.",
                (
                    _rate("promptrec_dead_letters_total", "topic, reason"),
                    "{{topic}} {{reason}}",
                ),
                unit="ops",
            ),
            _p(
                "Recommendations published",
                "Recommendations per second by trigger (interaction/request) and strategy "
                "(model, or popular for users without signal).",
                (
                    _rate("promptrec_recommendations_total", "source, strategy"),
                    "{{source}} {{strategy}}",
                ),
                unit="ops",
            ),
            _p(
                "Feedback learned",
                "Feedback events per second the scoring head learned from.",
                (_rate("promptrec_feedback_learned_total"), "learned"),
                unit="ops",
            ),
            _p(
                "Redeliveries",
                "Interactions read again after a crash or rebalance (already applied, answered "
                "again, not re-learned).",
                (_rate("promptrec_redeliveries_total"), "redelivered"),
                unit="ops",
            ),
            _p(
                "Mean batch size by agent",
                "Records per micro-batch (mean over the interval).",
                (batch_mean, "{{agent}}"),
            ),
            _p(
                "Batch size p95 by agent",
                "95th percentile of records per micro-batch.",
                (_quantile("0.95", "promptrec_batch_size", "agent, le"), "{{agent}}"),
            ),
        ),
    )


def _latency() -> RowSpec:
    e2e = "promptrec_event_to_recommendation_seconds"
    return RowSpec(
        "Latency",
        (
            PanelSpec(
                "End-to-end latency (event time to recommendation published)",
                "p50/p95/p99 of source event timestamp to recommendation published.",
                tuple(
                    Query(_quantile(q, e2e, "le"), legend)
                    for q, legend in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))
                ),
                unit="s",
                width=12,
            ),
            _p(
                "Stage latency p50 by stage",
                "Median time per micro-batch in each stage: decode, user (user vectors), search "
                "(FAISS), score (head), publish, catalog (prompt + encode + index upsert), learn, "
                "sync (head update published).",
                (_quantile("0.5", "promptrec_stage_seconds", "stage, le"), "{{stage}}"),
                unit="s",
                width=12,
            ),
            *(
                _p(
                    f"Stage latency p{p} by stage",
                    f"{p}th percentile time per micro-batch in each stage.",
                    (
                        _quantile(f"0.{p}", "promptrec_stage_seconds", "stage, le"),
                        "{{stage}}",
                    ),
                    unit="s",
                )
                for p in ("95", "99")
            ),
            _p(
                "Stage retries",
                "Retried batch failures per stage (encode, recommend, learn, sync, checkpoint).",
                (_increase("promptrec_stage_retries_total", "stage"), "{{stage}}"),
            ),
        ),
    )


def _quality() -> RowSpec:
    return RowSpec(
        "Quality",
        (
            _p(
                "Online AUC (test-then-learn)",
                "ROC AUC of the head on incoming feedback, scored before learning from it (last "
                "2000 labels).",
                (f"promptrec_online_auc{_I}", "{{instance}}"),
                unit="percentunit",
                min=0,
                max=1,
            ),
            _p(
                "Online training loss",
                "Loss of the last online-learning step of the scoring head.",
                (f"promptrec_online_loss{_I}", "{{instance}}"),
            ),
            _p(
                "Model version",
                "Version of the scoring head (increases with every learning step).",
                (f"max by (instance) (promptrec_model_version{_I})", "{{instance}}"),
                kind="stat",
            ),
            _p(
                "Head updates merged from other workers",
                "Model updates of other workers (model-updates topic) merged into each worker's "
                "head.",
                (
                    _increase("promptrec_model_updates_applied_total", "instance"),
                    "{{instance}}",
                ),
                width=24,
            ),
        ),
    )


def _state() -> RowSpec:
    checkpoint = "promptrec_last_checkpoint_timestamp_seconds"
    return RowSpec(
        "State",
        (
            _p(
                "Items in the index",
                "Catalog items in each worker's candidate index (every worker holds the whole "
                "catalog).",
                (f"promptrec_index_items{_I}", "{{instance}}"),
                width=6,
            ),
            _p(
                "Users with history",
                "Users with a history in the partitions each worker owns; the sum is the whole "
                "group.",
                (f"sum(promptrec_users_with_history{_I})", "all workers"),
                (f"promptrec_users_with_history{_I}", "{{instance}}"),
                width=6,
            ),
            _p(
                "Last checkpoint age",
                "Seconds since the last index snapshot and head checkpoint.",
                (f"time() - max by (instance) ({checkpoint}{_I} > 0)", "{{instance}}"),
                unit="s",
                width=6,
            ),
            _p(
                "Catalog replay caught up",
                "1 once the worker has replayed the compacted catalog topics.",
                (f"promptrec_catalog_ready{_I}", "{{instance}}"),
                width=6,
                kind="stat",
            ),
        ),
    )


def _health() -> RowSpec:
    info_labels = "instance, device, dtype, index_kind, index_device, model"
    return RowSpec(
        "Health",
        (
            _p(
                "Consumer lag per partition",
                "Records behind (end offset minus the group's committed offset), per input "
                "partition, reported by the worker that owns it.",
                (
                    f"sum by (topic, partition) (promptrec_consumer_lag{_I})",
                    "{{topic}}/{{partition}}",
                ),
            ),
            _p(
                "Consumer lag by topic",
                "Total records behind per input topic over all partitions.",
                (f"sum by (topic) (promptrec_consumer_lag{_I})", "{{topic}}"),
            ),
            _p(
                "Rebalances",
                "Consumer-group rebalances (partition assignments) per worker.",
                (_increase("promptrec_rebalances_total", "instance"), "{{instance}}"),
            ),
            _p(
                "Assigned partitions",
                "Input partitions each worker owns.",
                (
                    f"sum by (instance, topic) (promptrec_assigned_partitions{_I})",
                    "{{instance}} {{topic}}",
                ),
            ),
            _p(
                "Process memory",
                "Current resident set size and its peak.",
                (f"promptrec_process_resident_memory_bytes{_I}", "{{instance}} rss"),
                (f"promptrec_process_max_rss_bytes{_I}", "{{instance}} peak"),
                unit="bytes",
            ),
            _p(
                "Process CPU",
                "CPU cores used by each worker.",
                (f"rate(promptrec_process_cpu_seconds_total{_I}{_W})", "{{instance}}"),
                unit="percentunit",
            ),
            _p(
                "Up and ready",
                "up: Prometheus reached the worker; ready: /readyz would answer 200.",
                ('up{job="promptrec", instance=~"$instance"}', "{{instance}} up"),
                (f"promptrec_ready{_I}", "{{instance}} ready"),
                width=12,
            ),
            _p(
                "Workers and devices",
                "One row per worker: device in use (cpu/cuda), dtype, index kind and device, "
                "model.",
                (f"max by ({info_labels}) (promptrec_worker_info{_I})", "__auto"),
                width=12,
                kind="table",
            ),
        ),
    )


def _partition_stalls() -> RowSpec:
    return RowSpec(
        "Partition stalls",
        (
            _p(
                "Partition stalls (last 5 min)",
                "How often each input partition was found stalled in the last 5 minutes "
                "(promptrec_partition_stalls_total).",
                (
                    "sum by (topic, partition) "
                    f"(increase(promptrec_partition_stalls_total{_I}[5m]))",
                    "{{topic}}/{{partition}}",
                ),
                width=24,
            ),
        ),
    )


def _arms(arms: Sequence[str] = ()) -> RowSpec:
    """One row comparing the experiment arms (``default`` alone without an experiment)."""
    # Without names: every arm the workers export (bounded: the names of the experiments file).
    sel = f'{{instance=~"$instance", arm=~"{"|".join(arms)}"}}' if arms else _I

    def per_arm(metric: str) -> str:
        return f"sum by (arm) (rate({metric}{sel}{_W}))"

    recs, clicks = "promptrec_arm_recommendations_total", "promptrec_arm_clicks_total"
    return RowSpec(
        "Experiment arms",
        (
            _p(
                "Recommendations by arm",
                "Recommendations published per second, by experiment arm "
                "(PROMPTREC_EXPERIMENTS_FILE; one arm, default, without it).",
                (per_arm(recs), "{{arm}}"),
                unit="ops",
            ),
            _p(
                "Click-through rate by arm",
                "Positive feedback per recommendation, by the arm that made the recommendation "
                "(0 while an arm publishes nothing).",
                (f"{per_arm(clicks)} / clamp_min({per_arm(recs)}, 1e-9)", "{{arm}}"),
                unit="percentunit",
                min=0,
            ),
            _p(
                "Online AUC by arm",
                "ROC AUC of each arm's head on the feedback it learns from, scored before "
                "learning (last 2000 labels per arm and worker).",
                (f"avg by (arm) (promptrec_arm_online_auc{sel})", "{{arm}}"),
                unit="percentunit",
                min=0,
                max=1,
            ),
        ),
    )


def standard_rows() -> list[RowSpec]:
    """The rows every dashboard has, top to bottom."""
    return [
        _traffic(),
        _latency(),
        _quality(),
        _state(),
        _health(),
        _partition_stalls(),
        _arms(),
    ]


def rows(arms: Sequence[str] = ()) -> list[RowSpec]:
    """The dashboard's rows.

    Args:
        arms: Experiment arm names to restrict the "Experiment arms" row to (empty: every arm
            the workers export).
    """
    if not arms:
        return standard_rows()
    return [*standard_rows()[:-1], _arms(arms)]
