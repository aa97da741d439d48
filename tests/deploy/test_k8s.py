"""deploy/k8s is consistent: settings are real, probes hit the worker's endpoints, refs resolve."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptrec.encoder.prompts import PromptTemplates
from tests.deploy.conftest import DEPLOY, setting_env_names

K8S = DEPLOY / "k8s"
LoadSettings = Callable[[Mapping[str, str]], tuple[Any, Any, Any]]


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> manifest of everything kustomization.yaml applies."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = {}
    for path in kustomization["resources"]:
        assert (K8S / path).is_file(), path
        for doc in yaml.safe_load_all((K8S / path).read_text()):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


RES = resources()
DEPLOYMENT = RES[("Deployment", "promptrec-worker")]
POD = DEPLOYMENT["spec"]["template"]
CONTAINER = POD["spec"]["containers"][0]
SECRET = yaml.safe_load((K8S / "secret.example.yaml").read_text())


def pod_env() -> dict[str, str]:
    """The container's environment as the kubelet builds it (secrets as placeholders)."""
    env: dict[str, str] = {}
    for source in CONTAINER.get("envFrom", []):
        cm = RES[("ConfigMap", source["configMapRef"]["name"])]
        env.update(cm["data"])
    for var in CONTAINER.get("env", []):
        env[var["name"]] = var.get("value", "from-secret")
    return env


def test_every_env_var_is_a_setting_and_validates(load_settings: LoadSettings) -> None:
    env = pod_env()
    unknown = sorted(set(env) - setting_env_names())
    assert not unknown, f"not settings: {unknown}"
    stream, _, _ = load_settings(env)
    assert stream.metrics_host == "0.0.0.0"
    assert DEPLOYMENT["spec"]["replicas"] <= stream.partitions
    assert stream.security_protocol.startswith("SASL") and stream.sasl_mechanism


def test_sasl_credentials_come_from_the_secret() -> None:
    refs = {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in CONTAINER["env"]
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    assert set(refs) == {"PROMPTREC_SASL_USERNAME", "PROMPTREC_SASL_PASSWORD"}
    for ref in refs.values():
        assert ref["name"] == SECRET["metadata"]["name"]
        assert ref["key"] in SECRET["stringData"]
    # No credential sits in a ConfigMap.
    for (kind, _), doc in RES.items():
        if kind == "ConfigMap":
            assert not {"PROMPTREC_SASL_USERNAME", "PROMPTREC_SASL_PASSWORD"} & set(doc["data"])
    assert ("Secret", SECRET["metadata"]["name"]) not in RES  # created out of band


def test_probes_hit_the_worker_health_endpoints(load_settings: LoadSettings) -> None:
    stream, _, _ = load_settings(pod_env())
    named = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert named["metrics"] == stream.metrics_port
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert CONTAINER["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert CONTAINER[probe]["httpGet"]["port"] in named
    annotations = POD["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == stream.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_selects_the_workers_metrics_port() -> None:
    service = RES[("Service", "promptrec-metrics")]
    labels = POD["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port = service["spec"]["ports"][0]
    assert port["targetPort"] in {p["name"] for p in CONTAINER["ports"]}


def test_prompt_templates_are_mounted_where_the_setting_points(
    load_settings: LoadSettings, tmp_path: Any
) -> None:
    _, encoder, _ = load_settings(pod_env())
    volumes = {v["name"]: v for v in POD["spec"]["volumes"]}
    mount = next(
        m for m in CONTAINER["volumeMounts"] if m["mountPath"] == str(encoder.prompts_file)
    )
    source = volumes[mount["name"]]["configMap"]
    cm = RES[("ConfigMap", source["name"])]
    key = source["items"][0]["key"]
    assert mount["subPath"] == source["items"][0]["path"]
    json.loads(cm["data"][key])
    (tmp_path / "prompts.json").write_text(cm["data"][key])
    templates = PromptTemplates.load(tmp_path / "prompts.json")
    templates.template(encoder.item_prompt)
    templates.template(encoder.user_prompt)


def test_state_dir_is_a_volume_and_the_image_is_the_worker(load_settings: LoadSettings) -> None:
    stream, _, _ = load_settings(pod_env())
    assert str(stream.state_dir) in {m["mountPath"] for m in CONTAINER["volumeMounts"]}
    assert CONTAINER["args"] == ["worker"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert CONTAINER["image"] in {i["name"] for i in kustomization["images"]}
    # The image runs as the non-root user the Dockerfile creates.
    assert "--uid 10001" in (DEPLOY / "Dockerfile").read_text()
    assert POD["spec"]["securityContext"]["runAsUser"] == 10001


# -- schema validation -----------------------------------------------------------------------------
# kubeconform is not on PyPI or in Debian bookworm, and fetches its schemas from GitHub at run
# time; kubernetes-validate (dev extra, PyPI) bundles the Kubernetes JSON schemas of every minor
# release it supports and validates offline. strict=True rejects unknown fields, like
# `kubeconform -strict`. Kustomization is not a Kubernetes API kind (kubeconform needs `-skip
# Kustomization` too); its resources are checked above.


def kubernetes_validate() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed: it is in the dev extra "
        "(`make install`, or `pip install kubernetes-validate`)",
    )


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object of deploy/k8s (secret.example.yaml included)."""
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                yield path, doc


def schema_versions() -> list[str]:
    """The oldest and the newest Kubernetes release whose schemas kubernetes-validate ships."""
    utils = kubernetes_validate().utils
    versions = sorted(set(utils.all_versions()), key=lambda v: tuple(map(int, v.split("."))))
    return [versions[0], utils.latest_version()]


def test_every_manifest_kind_is_validated() -> None:
    kinds = {doc["kind"] for _, doc in manifests()}
    assert kinds == {"Namespace", "ConfigMap", "Deployment", "Service", "Secret"}


def test_manifests_pass_the_kubernetes_schemas_strictly() -> None:
    kv = kubernetes_validate()
    failures = []
    for version in schema_versions():
        for path, doc in manifests():
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                failures.append(
                    f"{path.name} {doc['kind']}/{doc['metadata']['name']} "
                    f"@ {version}: {exc.message}"
                )
    assert not failures, "\n".join(failures)


def test_schema_check_rejects_a_broken_deployment() -> None:
    # The validator bites: an unknown field and a port given as a string are both errors.
    kv = kubernetes_validate()
    version = kv.utils.latest_version()
    typo = copy.deepcopy(DEPLOYMENT)
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    string_port = copy.deepcopy(DEPLOYMENT)
    string_port["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9464"
    for broken in (typo, string_port):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, version, strict=True)
