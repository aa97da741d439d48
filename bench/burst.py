"""A catalog burst during a paced ``bench pipeline`` stream (``--burst-items N``).

``--burst-after`` s into each paced stream a producer process publishes N new items (new ids,
the generated catalog's texts with " (new edition)" in the title, so each is encoded), and a
driver thread polls the worker's metrics until all N are applied. The run then also reports the
latency of the interactions *sent while the burst was being encoded* (between the first burst
record's publish and the last one applied), next to the whole stream's: the question is whether
recommendations for items already indexed wait behind catalog encoding.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from bench.common import percentiles

if TYPE_CHECKING:
    from bench.cluster import Cluster

__all__ = ["Burst", "burst_summary"]


class Burst(threading.Thread):
    """Publishes ``items`` new items after ``after`` s and times until the worker applied them.

    Args:
        cluster: The running cluster (the worker's metrics count applied catalog records).
        items: New items to publish.
        after: Seconds to wait before publishing (into the stream).
        seed: Data seed of the generated texts.
        prefix: Item id prefix of this burst (new ids: nothing is skipped as unchanged).
        timeout: Longest wait for the worker to apply them.
    """

    def __init__(
        self, cluster: Cluster, items: int, after: float, seed: int, prefix: str, timeout: float
    ) -> None:
        super().__init__(name="burst", daemon=True)
        self.cluster, self.items, self.after = cluster, items, after
        self.seed, self.prefix, self.timeout = seed, prefix, timeout
        self.start_s = self.end_s = 0.0  # epoch seconds: first record sent, last one applied
        self.publish_s = 0.0
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        """Wait, publish, then poll the worker until every burst record is applied."""
        try:
            if self._halt.wait(self.after):
                return
            before = self.cluster.catalog_done()
            self.start_s = time.time()
            sent = self.cluster.run_producer(
                "catalog", timeout=self.timeout, items=self.items, users=0, seed=self.seed,
                profiles=0, item_prefix=self.prefix,
            )  # fmt: skip
            self.publish_s = float(sent["seconds"])
            expected = before + int(sent["items"])
            deadline = time.monotonic() + self.timeout
            while not self._halt.is_set() and time.monotonic() < deadline:
                if self.cluster.catalog_done() >= expected:
                    self.end_s = time.time()
                    return
                time.sleep(0.1)
            self.error = "burst not applied before the stream ended or the timeout"
        except Exception as exc:  # reported in the result; the stream's own figures still count
            self.error = f"{type(exc).__name__}: {exc}"

    def finish(self) -> None:
        """Stop waiting (the stream is over) and join."""
        self._halt.set()
        self.join(timeout=30)


def burst_summary(burst: Burst, samples: list[tuple[int, float]]) -> dict[str, Any]:
    """The burst's timing and the latency of events sent while it was being encoded.

    ``samples`` are ``(source ts in epoch ms, latency ms)`` of the stream's recommendations.
    """
    done = burst.end_s > 0
    lo, hi = burst.start_s * 1000.0, (burst.end_s if done else time.time()) * 1000.0
    during = [lat for ts, lat in samples if lo <= ts <= hi] if burst.start_s else []
    encode_s = burst.end_s - burst.start_s if done else None
    return {
        "items": burst.items,
        "after_s": burst.after,
        "applied": done,
        "error": burst.error,
        "publish_s": burst.publish_s,
        # First burst record published -> last one applied (publish time included).
        "encode_s": encode_s,
        "texts_per_s": burst.items / encode_s if encode_s else None,
        "latency_during_ms": percentiles(during),
    }
