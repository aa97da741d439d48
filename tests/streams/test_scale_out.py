"""Two workers in one consumer group: split partitions, shared catalog, synced head, takeover.

The takeover kills worker 1 with SIGKILL while a stream is in flight, after a seeded number of
its recommendations (``PROMPTREC_TEST_SEED``, printed); worker 2 must answer every event within
``TAKEOVER_BOUND_S`` of the kill, with none lost.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from tests.pipeline_fixtures import Producer, Recorder, WorkerProcess, interaction, now_ms
from tests.streams.reliability import (
    check_histories,
    clone,
    delivery,
    kill_seed,
    publish_catalog,
    settings_for,
    stalls,
    start_worker,
    worker_env,
)

# The waits inside (each with its own bound) add up to more than the suite's 300 s default on a
# loaded machine; this limit only catches a test that hangs.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

USERS = [f"u{i}" for i in range(40)]
N_ITEMS = 40
IN_FLIGHT_ROUNDS = 5  # rounds of USERS events sent just before the kill
# Kill -> every in-flight and later event answered by worker 2. A correctness bound, not a
# benchmark: the group notices the dead member after its session timeout (10 s), the broker
# holds the rejoin for up to the rebalance timeout (10 s), worker 2 recovers worker 1's history
# partitions from the changelog, then answers the backlog. Measured 16 s at load ~11 on 2 cores
# (the README's earlier runs: about 15 s); 7x headroom. Longer means a takeover that hangs.
TAKEOVER_BOUND_S = 120.0


def send_round(producer: Producer, n: int, sent: list[dict[str, Any]]) -> set[str]:
    ids = set()
    for j, user in enumerate(USERS):
        e = interaction(user, f"i{(n * 7 + j) % N_ITEMS}")
        producer.send("interactions", user, e)
        sent.append(e)
        ids.add(e["event_id"])
    producer.flush()
    return ids


def owners(recs: Recorder, ids: set[str]) -> dict[str, set[str]]:
    """user -> workers that answered the events ``ids``."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in recs.records:
        if r["source_event_id"] in ids:
            out[r["user_id"]].add(r["worker"])
    return out


def wait_metric(worker: WorkerProcess, name: str, pred: Any, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = worker.metric(name)
        if pred(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name} never satisfied the condition; last {value}")


def test_two_workers_share_the_load_and_the_model(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    seed = kill_seed("test_two_workers_share_the_load_and_the_model")
    rng = random.Random(seed)
    s1 = settings_for(own_broker.url, tmp_path / "state-1", partitions=4)
    s2 = clone(s1, tmp_path / "state-2")
    producer = Producer(s1)
    publish_catalog(producer, N_ITEMS)
    recs = Recorder(s1, f"{s1.topic_prefix}recommendations")
    # One after the other, as workers are added in production. Two simultaneous first joins on
    # the embedded broker once left a member that missed a rebalance (seen once in a loaded run).
    w1 = start_worker(s1, tmp_path / "w1.log")
    w2 = WorkerProcess(s2, tmp_path / "w2.log", env=worker_env(s2))
    sent: list[dict[str, Any]] = []
    try:
        w1.wait_ready()
        w2.start().wait_ready()
        # Each worker indexes the whole catalog, whatever partitions it owns.
        assert w1.metric("promptrec_index_items") == N_ITEMS
        assert w2.metric("promptrec_index_items") == N_ITEMS

        # Rounds until the group has settled with both workers answering.
        for n in range(30):
            ids = send_round(producer, n, sent)
            recs.wait_for(
                lambda rs, ids=ids: ids <= {r["source_event_id"] for r in rs}, timeout=120
            )
            answered = owners(recs, ids)
            workers = set().union(*answered.values())
            if len(workers) == 2 and all(len(w) == 1 for w in answered.values()):
                break
        else:
            raise AssertionError("the two workers never split the partitions")
        # One more round: the same split, one worker per user.
        ids = send_round(producer, 100, sent)
        recs.wait_for(lambda rs: ids <= {r["source_event_id"] for r in rs}, timeout=60)
        stable = owners(recs, ids)
        assert stable == answered
        name = {w: {u for u, ws in stable.items() if w in ws} for w in workers}
        w1_name = next(w for w in workers if w.endswith(f":{w1.proc.pid}"))  # type: ignore[union-attr]
        w1_users = sorted(name[w1_name])
        print(f"split: {len(w1_users)} users on worker 1, {len(USERS) - len(w1_users)} on worker 2")

        # Feedback for worker 1's users only: worker 2 gets the head update through the topic.
        before = w2.metric("promptrec_model_version")
        for i, user in enumerate(w1_users * 3):
            last = [e for e in sent if e["user_id"] == user][-1]
            f = {
                "event_id": uuid.uuid4().hex,
                "user_id": user,
                "item_id": last["item_id"],
                "label": i % 2,
                "ts": now_ms(),
            }
            producer.send("feedback", user, f)
        producer.flush()
        t0 = time.monotonic()
        v1 = wait_metric(w1, "promptrec_model_version", lambda v: v > before)
        t1 = time.monotonic()
        wait_metric(w2, "promptrec_model_version", lambda v: v >= v1)
        t2 = time.monotonic()
        sync_s = t2 - t1  # published on worker 1 -> merged on worker 2
        feedback_to_peer_s = t2 - t0  # feedback sent -> worker 2's head has the update
        assert w2.metric("promptrec_model_updates_applied_total") >= 1

        # Kill worker 1 mid-stream: worker 2 takes its partitions and its users' histories.
        in_flight: set[str] = set()
        for n in range(IN_FLIGHT_ROUNDS):
            in_flight |= send_round(producer, 150 + n, sent)
        kill_after = rng.randrange(len(in_flight))
        recs.wait_for(
            lambda rs: len(in_flight & {r["source_event_id"] for r in rs}) >= kill_after,
            timeout=120,
        )
        assert w1.proc is not None
        w1.proc.send_signal(signal.SIGKILL)
        w1.proc.wait()
        killed = time.monotonic()
        ids = send_round(producer, 200, sent)
        wanted = ids | in_flight
        recs.wait_for(lambda rs: wanted <= {r["source_event_id"] for r in rs}, timeout=240)
        takeover_s = time.monotonic() - killed
        after = owners(recs, ids)
        assert set().union(*after.values()) == {w for w in workers if w != w1_name}
        assert w2.alive
        stalls_counted = stalls(w2)
    finally:
        w1.stop()
        w2.stop()
        recs.close()
        producer.close()
    report = delivery(sent, recs.records)
    print(
        json.dumps(
            {
                "failure": "kill -9 of one of two workers mid-stream (takeover)",
                "seed": seed,
                **report,
                "killed_after_in_flight_recommendations": kill_after,
                "publish_to_peer_s": round(sync_s, 2),
                "feedback_to_peer_s": round(feedback_to_peer_s, 2),
                "takeover_s": round(takeover_s, 2),
                "takeover_bound_s": TAKEOVER_BOUND_S,
                "watchdog_stalls": stalls_counted,
            }
        )
    )
    assert report["events_lost"] == 0
    assert takeover_s <= TAKEOVER_BOUND_S, f"takeover took {takeover_s:.0f} s (seed {seed})"
    check_histories(s1, sent)
