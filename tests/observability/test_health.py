"""Liveness and readiness: the checks, and the endpoints on the metrics port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from promptrec.broker.embedded import free_port
from promptrec.observability.health import Health
from promptrec.observability.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_liveness_fails_once_the_loop_stops_beating() -> None:
    clock = Clock()
    health = Health(liveness_timeout_s=30, clock=clock)
    assert health.live() == (True, {"loop": True})
    clock.now += 29
    assert health.live()[0]
    clock.now += 2
    assert health.live() == (False, {"loop": False})
    health.beat()
    assert health.live()[0]


def test_readiness_needs_every_check_and_a_live_loop() -> None:
    clock = Clock()
    health = Health(liveness_timeout_s=30, clock=clock)
    state = {"catalog": False}
    health.add_check("catalog", lambda: state["catalog"])
    health.add_check("agents", lambda: True)
    assert health.ready() == (False, {"catalog": False, "agents": True, "loop": True})
    state["catalog"] = True
    assert health.ready() == (True, {"catalog": True, "agents": True, "loop": True})
    clock.now += 60
    assert health.ready()[0] is False


def test_a_check_that_raises_counts_as_not_ready() -> None:
    health = Health()

    def broken() -> bool:
        raise RuntimeError("boom")

    health.add_check("group", broken)
    assert health.ready() == (False, {"group": False, "loop": True})


def test_endpoints_share_the_metrics_port() -> None:
    clock = Clock()
    health = Health(liveness_timeout_s=30, clock=clock)
    ready = {"catalog": False}
    health.add_check("catalog", lambda: ready["catalog"])
    metrics = Metrics()
    port = metrics.serve("127.0.0.1", free_port(), routes=health.routes())
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    try:
        assert get("/healthz") == (200, {"status": "ok", "checks": {"loop": True}})
        code, body = get("/readyz")
        assert code == 503 and body["checks"] == {"catalog": False, "loop": True}
        ready["catalog"] = True
        assert get("/readyz")[0] == 200
        clock.now += 31
        assert get("/healthz")[0] == 503
        assert get("/readyz")[0] == 503
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            assert b"promptrec_events_total" in resp.read()
    finally:
        metrics.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/healthz", timeout=2)
