"""Crash recovery: kill -9 the worker mid-stream, restart it, lose nothing (issue: reliability).

20,000 interactions (and feedback, so the head learns) go through a real worker; at a seeded
random point (``PROMPTREC_TEST_SEED``, printed) the worker is killed with SIGKILL and a new one
starts on the same state folder and group; it must answer again within ``RECOVERY_BOUND_S``.
After the stream drains, every interaction is in its user's history exactly once and has at
least one recommendation naming it as its source; the index comes back from its snapshot and
the head from the model-updates topic, and the model version never goes backwards.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder
from tests.streams.reliability import (
    check_histories,
    delivery,
    feedback_for,
    interactions,
    kill_seed,
    publish_catalog,
    settings_for,
    stalls,
    start_worker,
    wait_all_answered,
)

# The waits inside (each with its own bound) add up to more than the suite's 300 s default on a
# loaded machine; this limit only catches a test that hangs.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

N_EVENTS = 20_000
N_USERS = 400
N_ITEMS = 200
# Kill -> first recommendation of the restarted worker. A correctness bound, not a benchmark:
# a new process imports torch and Faust and loads MiniLM (~20 s on a loaded 2-core machine),
# restores the index snapshot and replays the catalog and model updates, then joins the group,
# where the broker holds the join for the rebalance timeout (10 s) and the dead member's
# partitions wait for its session timeout (10 s), and finally recovers the history table from
# its changelog. Measured 37 s and 47 s at load ~11 on 2 cores; ~4x headroom over that.
# A worker that takes longer is broken for production use (or stuck), not slow.
RECOVERY_BOUND_S = 180.0


def test_kill_9_mid_stream_loses_nothing(own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    seed = kill_seed("test_kill_9_mid_stream_loses_nothing")
    rng = random.Random(seed)
    settings = settings_for(own_broker.url, tmp_path / "state")
    producer = Producer(settings)
    publish_catalog(producer, N_ITEMS)
    recs = Recorder(settings, f"{settings.topic_prefix}recommendations")
    first = start_worker(settings, tmp_path / "worker-1.log")
    try:
        first.wait_ready()
        events = interactions(N_EVENTS, N_USERS, N_ITEMS, seed=rng.randrange(1 << 30))
        feedback = feedback_for(events, every=10, seed=rng.randrange(1 << 30))
        fb = iter(feedback)
        for i, event in enumerate(events):
            producer.send("interactions", event["user_id"], event)
            if i % 10 == 9 and i > 2000:  # feedback trails its interactions
                f = next(fb)
                producer.send("feedback", f["user_id"], f)
        producer.flush()

        kill_after = rng.randint(2_000, 12_000)
        recs.wait_for(lambda rs: len(rs) >= kill_after, timeout=240)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        killed_at = time.time()
        old_worker = {r["worker"] for r in recs.records}
        print(f"killed the worker after {len(recs.records)} recommendations")

        second = start_worker(settings, tmp_path / "worker-2.log")
        try:
            wait_all_answered(recs, settings, events, timeout=400, context=f" (seed {seed})")
            assert second.alive
            # Reported, not asserted: a stall the watchdog healed is no failure of this test.
            stalls_counted = stalls(second)
            log = (tmp_path / "worker-2.log").read_text(errors="replace")
        finally:
            second.stop()
    finally:
        first.stop()
        recs.close()
        producer.close()

    new = [r for r in recs.records if r["worker"] not in old_worker]
    recovered_at = min(r["generated_at"] for r in new) / 1000.0
    recovery_s = recovered_at - killed_at
    report = delivery(events, recs.records)
    print(
        json.dumps(
            {
                "failure": "kill -9 mid-stream, restart on the same state",
                "seed": seed,
                **report,
                "killed_after_recommendations": kill_after,
                "recovery_s": round(recovery_s, 2),
                "recovery_bound_s": RECOVERY_BOUND_S,
                "watchdog_stalls": stalls_counted,
            }
        )
    )
    assert report["events_lost"] == 0
    assert recovery_s <= RECOVERY_BOUND_S, f"recovery took {recovery_s:.0f} s (seed {seed})"
    t0 = time.monotonic()
    check_histories(settings, events)
    print(f"history changelog read and checked in {time.monotonic() - t0:.1f} s")
    # The index came back from its snapshot, the head from the model-updates topic.
    assert "restored" in log and "vectors from" in log, log[-3000:]
    assert "rebuilding the scoring head from" in log
    old_versions = [r["model_version"] for r in recs.records if r["worker"] in old_worker]
    new_versions = [r["model_version"] for r in new]
    assert max(old_versions) > 0, "the head never learned before the kill"
    assert min(new_versions) >= max(old_versions)
