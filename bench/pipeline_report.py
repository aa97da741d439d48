"""Worker stage totals and the printed tables of ``promptrec bench pipeline``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.common import print_table

if TYPE_CHECKING:
    from bench.cluster import Cluster

__all__ = ["print_result", "stage_diff", "stage_totals"]


def stage_totals(cluster: Cluster) -> dict[str, Any]:
    """Worker-side stage seconds and batch sizes from its Prometheus endpoint."""
    out: dict[str, Any] = {"stage_seconds": {}, "batches": {}}
    for (name, labels), value in cluster.metrics().items():
        lab = dict(labels)
        key = lab.get("stage") or lab.get("agent") or "?"
        if name == "promptrec_stage_seconds_sum":
            out["stage_seconds"][key] = value
        elif name == "promptrec_batch_size_sum":
            out["batches"].setdefault(key, {})["events"] = value
        elif name == "promptrec_batch_size_count":
            out["batches"].setdefault(key, {})["batches"] = value
    return out


def stage_diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` of two :func:`stage_totals`, with the mean batch size per agent."""
    stages = {k: v - before["stage_seconds"].get(k, 0.0) for k, v in after["stage_seconds"].items()}
    batches = {}
    for k, v in after["batches"].items():
        b = before["batches"].get(k, {})
        n = v.get("batches", 0) - b.get("batches", 0)
        e = v.get("events", 0) - b.get("events", 0)
        batches[k] = {"batches": n, "events": e, "mean_size": e / n if n else 0.0}
    return {"stage_seconds": stages, "batches": batches}


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def print_result(result: dict[str, Any]) -> None:
    """The catalog, throughput/floor, latency-by-rate and stage tables."""
    c = result["catalog"]
    print_table(
        "catalog (items + user profiles, prompt-wrapped, encoded once)",
        ["items", "profiles", "encode s", "texts/s"],
        [[c["items"], c["user_profiles"], c["encode_s"], c["texts_per_s"]]],
    )
    rows = []
    for r in result["runs"]:
        floor = r.get("floor") or {}
        rows.append([
            str(r["rate"]), r["events_sent"], r["recommendations"], r["throughput_eps"],
            floor.get("events_per_s", float("nan")), _ratio(r.get("ratio_to_floor")),
            r["worker_cpu_ms_per_event"], floor.get("cpu_ms_per_event", float("nan")),
            r["broker_cpu_ms_per_event"], r["worker_rss_mb"]["peak"], r["worker_rss_mb"]["final"],
        ])  # fmt: skip
    print_table(
        "throughput (one recommendation per interaction) and the raw passthrough floor",
        ["rate", "sent", "recs", "events/s", "floor ev/s", "ratio", "cpu ms/ev",
         "floor cpu ms/ev", "broker ms/ev", "rss peak MB", "rss MB"],
        rows,
    )  # fmt: skip
    rows = []
    for r in result["runs"]:
        lat, steady = r["latency_ms"], r["steady_latency_ms"]
        rows.append([
            str(r["rate"]), r["producer_send_rate"], r["throughput_eps"],
            _yes(r["keeps_up"]), steady["n"], steady["p50"], steady["p95"],
            steady["p99"], steady["max"], lat["p99"], r["producer_behind_s"],
        ])  # fmt: skip
    print_table(
        f"end-to-end latency by rate (steady: events sent after the first "
        f"{result['config']['ramp_s']:g} s of each stream)",
        ["rate", "sent/s", "recs/s", "keeps up", "n", "p50 ms", "p95 ms", "p99 ms", "max ms",
         "all p99 ms", "producer behind s"],
        rows,
    )  # fmt: skip
    if result.get("floor_events_per_s"):
        print(f"\n  floor {result['floor_events_per_s']:,.0f} events/s; worker at MAX "
              f"{_ratio(result.get('ratio_to_floor'))} of it")  # fmt: skip
    bursts = [(r["rate"], r["steady_latency_ms"], r["burst"]) for r in result["runs"] if r["burst"]]
    if bursts:
        print_table(
            "catalog burst during the stream: latency of interactions sent while it was encoded",
            ["rate", "new items", "applied", "encode s", "texts/s", "n", "p50 ms", "p95 ms",
             "p99 ms", "max ms", "stream p99 ms"],
            [[str(rate), b["items"], _yes(b["applied"]), b["encode_s"] or float("nan"),
              b["texts_per_s"] or float("nan"), b["latency_during_ms"]["n"],
              b["latency_during_ms"]["p50"], b["latency_during_ms"]["p95"],
              b["latency_during_ms"]["p99"], b["latency_during_ms"]["max"], steady["p99"]]
             for rate, steady, b in bursts],
        )  # fmt: skip
    for r in result["runs"]:
        stages = r["worker_stages"]
        n = max(r["recommendations"], 1)
        parts = ", ".join(
            f"{k} {1e6 * v / n:.0f}" for k, v in sorted(stages["stage_seconds"].items()) if v
        )
        mean = stages["batches"].get("recommend", {}).get("mean_size", 0.0)
        print(f"  rate {r['rate']}: worker stage us/event: {parts}; mean batch {mean:.1f}")
