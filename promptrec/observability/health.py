"""Liveness and readiness of a worker, and the hooks that feed the health metrics.

Both endpoints are served by the metrics HTTP server, on the same port as ``/metrics``
(``PROMPTREC_METRICS_PORT``, default 9464):

- ``GET /healthz`` (liveness): 200 while the worker's asyncio loop keeps ticking (a 1 s Faust
  timer beats; no beat for ``PROMPTREC_LIVENESS_TIMEOUT_S`` means a stuck loop), else 503.
- ``GET /readyz`` (readiness): 200 once the catalog and model-updates replays have caught up
  (the agents serve), every agent runs, the worker has joined its consumer group and is not
  rebalancing, and the loop is live; else 503.

Both answer a small JSON document with each check, e.g. ``{"status": "ok", "checks":
{"catalog": true, "model": true, "agents": true, "group": true, "loop": true}}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from promptrec.observability.metrics import Route

__all__ = ["Health"]


class Health:
    """Liveness (a heartbeat) and readiness (named checks) of one worker."""

    def __init__(
        self, liveness_timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self._clock = clock
        self._last_beat = clock()
        self._checks: dict[str, Callable[[], bool]] = {}

    def beat(self) -> None:
        """Record that the event loop is alive (called from a 1 s timer)."""
        self._last_beat = self._clock()

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        """Add a readiness condition; an exception inside it counts as not ready."""
        self._checks[name] = check

    def live(self) -> tuple[bool, dict[str, bool]]:
        """Whether the loop ticked within the liveness timeout."""
        ok = self._clock() - self._last_beat < self.liveness_timeout_s
        return ok, {"loop": ok}

    def ready(self) -> tuple[bool, dict[str, bool]]:
        """Whether every readiness check passes (and the worker is live)."""
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        live, loop = self.live()
        results.update(loop)
        return all(results.values()) and live, results

    def routes(self) -> dict[str, Route]:
        """``/healthz`` and ``/readyz`` for :meth:`Metrics.serve`."""
        return {
            "/healthz": lambda: _answer(*self.live()),
            "/readyz": lambda: _answer(*self.ready()),
        }


def _answer(ok: bool, checks: dict[str, bool]) -> tuple[int, str, bytes]:
    body = json.dumps({"status": "ok" if ok else "unavailable", "checks": checks}).encode()
    return (200 if ok else 503), "application/json", body
