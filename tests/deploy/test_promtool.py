"""The shipped Prometheus config and alert rules pass promtool's checks and rule unit tests."""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"


def _promtool(promtool: str, *args: str) -> str:
    done = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_prometheus_config_is_valid(promtool_bin: str) -> None:
    # Also checks that every rule file it names exists and parses.
    out = _promtool(promtool_bin, "check", "config", "prometheus.yml")
    assert "SUCCESS" in out and "1 rule files found" in out


def test_alert_rules_are_valid(promtool_bin: str) -> None:
    out = _promtool(promtool_bin, "check", "rules", "alerts.yml")
    assert "SUCCESS: 7 rules found" in out


def test_alert_rules_pass_their_unit_tests(promtool_bin: str) -> None:
    _promtool(promtool_bin, "test", "rules", "alerts_test.yml")


def test_required_alerts_are_shipped_and_tested() -> None:
    import yaml

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    required = {
        "PromptrecConsumerLagGrowing",
        "PromptrecDeadLetterRateHigh",
        "PromptrecNoRecommendations",
        "PromptrecPartitionStalled",
    }
    assert required <= names
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    tested = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert names == tested, f"alerts without a firing unit test: {names - tested}"
