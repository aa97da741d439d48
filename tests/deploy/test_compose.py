"""deploy/compose.yaml is consistent: no container engine runs here, so its wiring is checked.

Every referenced file exists, every PROMPTREC_* variable is a real setting with a valid value,
ports and volumes line up with the settings, Prometheus scrapes every worker, Grafana gets the
datasource and the dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from promptrec.encoder.prompts import PromptTemplates
from tests.deploy.conftest import DEPLOY, ROOT, setting_env_names

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
WORKERS = {
    name: svc
    for name, svc in SERVICES.items()
    if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
}
LoadSettings = Callable[[Mapping[str, str]], tuple[Any, Any, Any]]


def env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, container target) of every volume entry (short syntax)."""
    out = []
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        out.append((source, target))
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The file of this repository a bind mount puts at ``container_path``."""
    for source, target in mounts(service):
        if not source.startswith((".", "/")):
            continue
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (DEPLOY / source / container_path[len(target) :].lstrip("/")).resolve()
    return None


def ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) pairs."""
    return [tuple(int(p) for p in str(entry).split(":")[-2:]) for entry in service["ports"]]  # type: ignore[misc]


def test_stack_has_kafka_workers_prometheus_and_grafana() -> None:
    assert {"kafka", "prometheus", "grafana"} <= SERVICES.keys()
    assert len(WORKERS) >= 2
    assert not any("zookeeper" in name for name in SERVICES)


def test_kafka_runs_in_kraft_mode() -> None:
    kafka = env(SERVICES["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in kafka)
    node, voter = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert node == kafka["KAFKA_NODE_ID"]
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(
        (item.split("://")[0], item.split(":")[-1]) for item in kafka["KAFKA_LISTENERS"].split(",")
    )
    assert voter == f"kafka:{listeners[controller]}"
    assert kafka["CLUSTER_ID"]
    # A single broker: internal topics cannot have a replication factor above 1.
    assert kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_worker_environment_is_real_settings(worker: str, load_settings: LoadSettings) -> None:
    variables = env(WORKERS[worker])
    known = setting_env_names()
    unknown = sorted(k for k in variables if k not in known)
    assert not unknown, f"{worker}: not a setting: {unknown}"
    stream, encoder, index = load_settings(variables)  # values validate
    # The broker address is Kafka's advertised internal listener.
    advertised = env(SERVICES["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert any(a.endswith(f"//{s}") for a in advertised for s in stream.bootstrap_servers)
    assert stream.partitions >= len(WORKERS)
    assert stream.replication_factor == 1
    assert stream.metrics_host == "0.0.0.0"
    assert stream.producer_batch_bytes > 1  # the changelog is written in batches
    assert encoder.prompts_file is not None and index.kind in ("flat", "hnsw")


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_worker_ports_volumes_and_healthcheck(worker: str, load_settings: LoadSettings) -> None:
    svc = WORKERS[worker]
    stream, encoder, _ = load_settings(env(svc))
    assert [c for _, c in ports(svc)] == [stream.metrics_port]
    check = " ".join(svc["healthcheck"]["test"])
    url = urlparse(re.search(r"http://[^'\"]+", check).group(0))  # type: ignore[union-attr]
    assert url.port == stream.metrics_port and url.path in ("/healthz", "/readyz")
    # Prompt templates come from a mounted file that exists and holds the templates in use.
    prompts = host_path(svc, str(encoder.prompts_file))
    assert prompts is not None and prompts.is_file(), encoder.prompts_file
    templates = PromptTemplates.load(prompts)
    templates.template(encoder.item_prompt)
    templates.template(encoder.user_prompt)
    # State lives on the worker's own named volume.
    state = [s for s, t in mounts(svc) if t == str(stream.state_dir)]
    assert state and state[0] in COMPOSE["volumes"]
    assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_workers_do_not_share_state_or_host_ports() -> None:
    states = [s for svc in WORKERS.values() for s, t in mounts(svc) if t == "/var/lib/promptrec"]
    assert len(set(states)) == len(WORKERS)
    host_ports = [h for svc in SERVICES.values() for h, _ in ports(svc)]
    assert len(host_ports) == len(set(host_ports))


def test_every_bind_mount_exists_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, svc in SERVICES.items():
        for source, _ in mounts(svc):
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared


def test_image_build_files_exist() -> None:
    for svc in WORKERS.values():
        context = (DEPLOY / svc["build"]["context"]).resolve()
        assert context == ROOT
        dockerfile = context / svc["build"]["dockerfile"]
        text = dockerfile.read_text()
        for line in text.splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                for source in line.split()[1:-1]:
                    if "*" not in source:
                        assert (context / source).exists(), f"COPY source {source} missing"
        # The image's port and the worker's healthcheck agree with the compose settings.
        assert "EXPOSE 9464" in text and "PROMPTREC_METRICS_PORT=9464" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_prometheus_scrapes_every_worker(load_settings: LoadSettings) -> None:
    svc = SERVICES["prometheus"]
    flags = dict(arg.lstrip("-").partition("=")[::2] for arg in svc["command"])
    config_path = host_path(svc, flags["config.file"])
    assert config_path is not None and config_path.is_file()
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert (config_path.parent / rule_file).is_file()
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "promptrec")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = set()
    for name, worker in WORKERS.items():
        stream, _, _ = load_settings(env(worker))
        expected.add(f"{worker.get('hostname', name)}:{stream.metrics_port}")
    assert targets == expected
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert (9090, 9090) in ports(svc)


def test_grafana_gets_the_datasource_and_the_dashboard() -> None:
    svc = SERVICES["grafana"]
    provisioning = host_path(svc, "/etc/grafana/provisioning")
    assert provisioning is not None
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    url = urlparse(datasources["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    providers = yaml.safe_load((provisioning / "dashboards" / "promptrec.yaml").read_text())
    folder = providers["providers"][0]["options"]["path"]
    dashboards = host_path(svc, folder)
    assert dashboards is not None and dashboards.is_dir()
    board = json.loads((dashboards / "promptrec.json").read_text())
    assert board["uid"] and board["title"] == "promptrec"
    home = host_path(svc, env(svc)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()
    # Panels use the datasource variable, whose type is the provisioned datasource's.
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == datasources["datasources"][0]["type"]
