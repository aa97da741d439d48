"""Every query of the shipped Grafana dashboard returns data from a real Prometheus.

A real Prometheus (Debian's ``prometheus`` binary) scrapes a real worker process every second;
the worker runs on the session's embedded broker (with the tiny random BERT, so it starts fast)
and processes catalog records, interactions, requests, feedback and bad records in two waves (so
that every counter and histogram series, even one born in the first wave, has an increase for
``rate()``). Then every PromQL expression of every panel is evaluated through Prometheus's HTTP
API and must return at least one series with a finite value. The one exception is a panel on a
metric listed in ``PENDING_METRICS`` (shown before the worker exports it): its query must still be
valid PromQL on the real server, and the metric must really be absent from the scrape, so the
entry has to go (and the panel gets the full check) as soon as the metric lands. The shipped ``prometheus.yml`` is
the base of the test's config (same job, same rule file), so its alert rules load on a real server.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.cluster import stop_process
from promptrec.broker.embedded import EmbeddedBroker, free_port
from promptrec.streams.settings import StreamSettings
from tests.deploy.conftest import DEPLOY
from tests.pipeline_fixtures import (
    TOPICS,
    Producer,
    WorkerProcess,
    catalog_items,
    interaction,
    now_ms,
    request,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "promptrec.json"
# Grafana's variables and what the test puts in their place.
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$instance": ".*",
    "${instance}": ".*",
}
USERS = {"u-hiker": "hiking", "u-cook": "cooking", "u-jazz": "jazz", "u-space": "space"}
# Metrics a panel shows before any worker exports them: promptrec_partition_stalls_total comes
# with the partition-stall detection (another change). Remove an entry once the metric exists.
PENDING_METRICS: frozenset[str] = frozenset()
METRIC_NAME = re.compile(r"\b(promptrec_[a-z0-9_]+)")


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with variables substituted) of every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unsubstituted variable in {panel['title']!r}: {expr}"
            out.append((panel["title"], expr))
    return out


class Prometheus:
    """A Prometheus server process with a temporary config and TSDB."""

    def __init__(self, binary: str, folder: Path, target: str) -> None:
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "promptrec")
        job["static_configs"] = [{"targets": [target]}]
        config["scrape_configs"] = [job]
        config["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in config["rule_files"]]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "prometheus.log"
        cmd = [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
            "--log.level=warn",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready:\n{self.log.read_text()}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float:
        """The first sample's value of an instant query, or NaN when it has none."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan

    def wait_until(self, expr: str, ok: Callable[[float], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(expr)
            if not math.isnan(value) and ok(value):
                return
            time.sleep(0.3)
        raise AssertionError(f"prometheus never saw {expr} hold; last {self.value(expr)}")

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)


@pytest.fixture(scope="module")
def settings(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> StreamSettings:
    return settings_for(broker.url, tmp_path_factory.mktemp("state"), partitions=2)


@pytest.fixture(scope="module")
def producer(settings: StreamSettings) -> Iterator[Producer]:
    p = Producer(settings)
    yield p
    p.close()


@pytest.fixture(scope="module")
def worker(
    settings: StreamSettings,
    producer: Producer,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    for item in catalog_items():
        producer.send("items", item["item_id"], item)
    producer.send("users", "u-hiker", {"user_id": "u-hiker", "attributes": {"likes": "hiking"}})
    producer.flush()
    proc = WorkerProcess(
        settings,
        tmp_path_factory.mktemp("logs") / "worker.log",
        env={
            "PROMPTREC_PARTITIONS": "2",
            "PROMPTREC_CHECKPOINT_INTERVAL_S": "2",
            "PROMPTREC_LAG_POLL_INTERVAL_S": "1",
            "PROMPTREC_ENCODER_MODEL_DIR": str(tiny_model_dir),
        },
    )
    try:
        proc.start().wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def prometheus(
    prometheus_bin: str, settings: StreamSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    prom = Prometheus(
        prometheus_bin, tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{settings.metrics_port}"
    )
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


def send_wave(producer: Producer, worker: WorkerProcess, wave: int) -> None:
    """Interactions and requests, then (once answered) feedback, plus bad records everywhere."""
    recs_before = worker.metric("promptrec_event_to_recommendation_seconds_count")
    for user, topic in USERS.items():
        for n in range(3):
            item = f"{topic}-{(3 * wave + n) % len(TOPICS[topic])}"
            producer.send("interactions", user, interaction(user, item))
        producer.send("recommendation-requests", user, request(user))
    # A user without any signal gets the popular items.
    stranger = f"u-new-{wave}"
    producer.send("recommendation-requests", stranger, request(stranger))
    # Bad input on every agent's topics, and an unchanged catalog item (outcome "skipped").
    producer.send("interactions", "u-cook", b"{not json")
    producer.send("recommendation-requests", "u-cook", b'{"request_id": "r", "k": 100000}')
    producer.send("items", f"empty-{wave}", {"item_id": f"empty-{wave}", "title": "", "text": ""})
    producer.send("items", "jazz-0", catalog_items()[16])
    producer.flush()
    expected = recs_before + 4 * 3 + 4 + 1
    _wait(lambda: worker.metric("promptrec_event_to_recommendation_seconds_count") >= expected)

    learned_before = worker.metric("promptrec_feedback_learned_total")
    for n, (user, topic) in enumerate(USERS.items()):
        for label in (1, 0):
            other = next(t for t in TOPICS if t != topic)
            item = f"{topic if label else other}-{n}"
            producer.send(
                "feedback",
                user,
                {
                    "event_id": uuid.uuid4().hex,
                    "user_id": user,
                    "item_id": item,
                    "label": label,
                    "ts": now_ms(),
                },
            )
    producer.send("feedback", "u-cook", b"[1, 2]")
    producer.flush()
    _wait(lambda: worker.metric("promptrec_feedback_learned_total") >= learned_before + 8)


def _wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not process the wave in time")


@pytest.fixture(scope="module")
def scraped(worker: WorkerProcess, prometheus: Prometheus, producer: Producer) -> Prometheus:
    """Prometheus after it has scraped the worker through both waves."""
    prometheus.wait_until('up{job="promptrec"}', lambda v: v == 1)
    for wave in (1, 2):
        send_wave(producer, worker, wave)
        learned = worker.metric("promptrec_feedback_learned_total")
        prometheus.wait_until("promptrec_feedback_learned_total", lambda v, n=learned: v >= n)
    # The lag poller, checkpoint and gauge timers have run since (1 s, 2 s and 5 s intervals).
    prometheus.wait_until("promptrec_users_with_history", lambda v: v >= len(USERS))
    prometheus.wait_until("sum(promptrec_consumer_lag_polls_total)", lambda v: v >= 2)
    prometheus.wait_until("max(promptrec_last_checkpoint_timestamp_seconds)", lambda v: v > 0)
    return prometheus


def _pending(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr)) & PENDING_METRICS


@pytest.fixture(scope="module")
def exported(scraped: Prometheus) -> set[str]:
    """Names of every promptrec series Prometheus scraped from the worker."""
    result = scraped.query('count by (__name__) ({__name__=~"promptrec_.+"})')
    return {series["metric"]["__name__"] for series in result}


@pytest.mark.parametrize(
    ("title", "expr"), [(t, e) for t, e in dashboard_queries() if not _pending(e)]
)
def test_dashboard_query_returns_data(scraped: Prometheus, title: str, expr: str) -> None:
    result = scraped.query(expr)
    assert result, f"panel {title!r}: no series for {expr}"
    values = [float(series["value"][1]) for series in result]
    assert any(math.isfinite(v) for v in values), f"panel {title!r}: only {values} for {expr}"


@pytest.mark.parametrize(("title", "expr"), [(t, e) for t, e in dashboard_queries() if _pending(e)])
def test_pending_metric_query_is_valid_and_metric_still_absent(
    scraped: Prometheus, exported: set[str], title: str, expr: str
) -> None:
    assert len(exported) > 20, exported  # the scrape worked: absence below means something
    assert not _pending(expr) & exported, (
        f"panel {title!r}: {sorted(_pending(expr))} is exported now; remove it from "
        "PENDING_METRICS so that the panel must return data"
    )
    # Valid PromQL on the real server (a parse error is an HTTP 400 and fails here), no data yet.
    assert scraped.query(expr) == []


def test_dashboard_has_the_required_rows() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Traffic",
        "Latency",
        "Quality",
        "State",
        "Health",
        "Partition stalls",
        "Experiment arms",
    ]
    assert {m for _, expr in dashboard_queries() for m in _pending(expr)} == PENDING_METRICS
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in exprs


def test_scraped_values_describe_the_run(scraped: Prometheus, settings: StreamSettings) -> None:
    # The numbers behind the panels are the run's numbers, not just "some data".
    q = scraped.value
    assert q('promptrec_events_total{topic="items", outcome="skipped"}') >= 2
    assert q('promptrec_dead_letters_total{topic="interactions", reason="invalid_json"}') >= 2
    assert q('promptrec_events_total{topic="feedback", outcome="dead_letter"}') >= 2
    assert q('sum(promptrec_recommendations_total{strategy="popular"})') >= 2
    assert q("promptrec_index_items") == sum(len(t) for t in TOPICS.values())
    assert q("promptrec_users_with_history") == len(USERS)
    assert 0.0 <= q("promptrec_online_auc") <= 1.0
    assert q("sum(promptrec_assigned_partitions)") == 3 * settings.partitions
    assert q("promptrec_rebalances_total") >= 1
    assert q("promptrec_ready") == 1
    assert q("promptrec_process_resident_memory_bytes") > 10e6
    info = scraped.query("promptrec_worker_info")
    assert info and info[0]["metric"]["device"] == "cpu"
    # Lag series exist only for the worker's own input partitions: bounded labels.
    lag = scraped.query("promptrec_consumer_lag")
    assert {s["metric"]["topic"] for s in lag} == {
        "interactions",
        "recommendation-requests",
        "feedback",
    }
    assert {s["metric"]["partition"] for s in lag} == {"0", "1"}


def test_worker_serves_liveness_and_readiness(scraped: Prometheus, worker: WorkerProcess) -> None:
    base = f"http://127.0.0.1:{worker.settings.metrics_port}"
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            body = json.loads(resp.read())
        assert resp.status == 200 and body["status"] == "ok", body
    assert body["checks"] == {
        "catalog": True,
        "model": True,
        "agents": True,
        "group": True,
        "loop": True,
    }


def test_shipped_alert_rules_load_on_the_real_server(scraped: Prometheus) -> None:
    with urllib.request.urlopen(f"{scraped.url}/api/v1/rules", timeout=5) as resp:
        rules = json.loads(resp.read())["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert "PromptrecNoRecommendations" in names
    assert all(r["health"] != "err" for g in rules for r in g["rules"]), rules
