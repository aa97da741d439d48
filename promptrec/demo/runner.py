"""``promptrec demo``: embedded broker + one worker + the bundled sample stream, printed live.

The demo plays the three outside roles of the system: an event producer (catalog, then
interactions at a fixed rate, a brand-new item half-way through), a consumer of the
recommendations topic (it prints them), and a user who clicks some recommendations (feedback).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from promptrec.broker.embedded import EmbeddedBroker
from promptrec.demo.sample_data import load_bundled
from promptrec.streams.clients import make_consumer, make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

__all__ = ["run_demo"]

NEW_ITEM: dict[str, Any] = {
    "item_id": "demo-new-1",
    "title": "Summit Pro Ultralight Trekking Poles",
    "text": "Carbon trekking poles for long mountain hikes and alpine trails.",
    "attributes": {"category": "outdoor gear", "tags": ["hiking", "trekking", "mountain"]},
}


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until the stream ends (``--events``) or Ctrl-C; returns an exit code."""
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="promptrec-demo-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = _Printer(quiet=bool(args.quiet))
    with EmbeddedBroker(port=args.port or None) as broker:
        settings = StreamSettings(
            broker=broker.url,
            topic_prefix="demo.",
            state_dir=state_dir,
            metrics_port=args.metrics_port,
        )
        ensure_topics(settings)
        out.say(f"broker ready on {broker.url}; state in {state_dir}")
        worker = _start_worker(args, broker.url, state_dir)
        try:
            return _play(args, settings, out, stop, worker)
        except KeyboardInterrupt:
            out.say("stopping (Ctrl-C)")
            return 0
        finally:
            _stop_worker(worker)
            out.say("worker stopped; broker stopping")


def _start_worker(
    args: argparse.Namespace, broker_url: str, state_dir: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "promptrec", "worker",
        "--broker", broker_url, "--topic-prefix", "demo.", "--state-dir", str(state_dir),
        "--metrics-port", str(args.metrics_port), "--log-level", "warn",
    ]  # fmt: skip
    if args.model_dir:
        cmd += ["--model-dir", str(args.model_dir)]
    if args.device:
        cmd += ["--device", args.device]
    log = open(state_dir / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    # Linux: the worker gets SIGTERM if the demo dies, even on kill -9; no orphans.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _play(
    args: argparse.Namespace,
    settings: StreamSettings,
    out: _Printer,
    stop: threading.Event,
    worker: subprocess.Popen[bytes],
) -> int:
    names = TopicNames.from_settings(settings)
    data = load_bundled()
    titles = {i["item_id"]: i["title"] for i in data.items}
    titles[NEW_ITEM["item_id"]] = NEW_ITEM["title"]
    category = {i["item_id"]: i["attributes"].get("category") for i in data.items}
    category[NEW_ITEM["item_id"]] = NEW_ITEM["attributes"]["category"]
    interests = {u["user_id"]: set(u["attributes"].get("interests", [])) for u in data.users}
    producer = make_producer(settings)
    for item in data.items:
        producer.send(names.items, key=item["item_id"].encode(), value=_json(item))
    for user in data.users:
        producer.send(names.users, key=user["user_id"].encode(), value=_json(user))
    producer.flush()
    out.say(f"published {len(data.items)} items and {len(data.users)} user profiles")

    consumer = make_consumer(settings)
    parts = [TopicPartition(names.recommendations, p) for p in range(settings.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)

    events = data.interactions[: args.events] if args.events else data.interactions
    out.say("waiting for the worker (model load, catalog replay, consumer-group join) ...")
    if not _warm_up(producer, consumer, names, worker, stop, timeout=180.0):
        out.say(f"worker not ready; see {settings.state_dir / 'worker.log'}")
        return 1
    sent = threading.Event()
    feeder = threading.Thread(
        target=_feed, args=(producer, names, events, args.rate, stop, sent, out), daemon=True
    )
    out.say(f"worker ready; replaying {len(events)} interactions at {args.rate}/s")
    feeder.start()
    rng = random.Random(7)
    received, latencies, new_seen = 0, [], False
    first = last = None
    idle_since = time.monotonic()
    while not stop.is_set():
        if worker.poll() is not None:
            out.say(
                f"worker exited with code {worker.returncode}; "
                f"see {settings.state_dir / 'worker.log'}"
            )
            return 1
        batch = consumer.poll(timeout_ms=200)
        for records in batch.values():
            for record in records:
                rec = json.loads(record.value)
                received += 1
                now = time.time()
                first = first or now
                last = now
                latencies.append(now * 1000 - rec["source_ts"])
                idle_since = time.monotonic()
                items = rec["items"]
                shown = ", ".join(titles.get(i["item_id"], i["item_id"]) for i in items[:3])
                out.show(
                    f"{rec['user_id']:>6} <- {shown}  (v{rec['model_version']}, "
                    f"{latencies[-1]:.0f} ms)"
                )
                if not new_seen and any(i["item_id"] == NEW_ITEM["item_id"] for i in items):
                    new_seen = True
                    out.say(f"*** the new item {NEW_ITEM['title']!r} is being recommended ***")
                _feedback(producer, names, rec, category, interests, rng)
        drained = received >= len(events) or time.monotonic() - idle_since > 30
        if args.events and sent.is_set() and drained:
            break
    producer.flush()
    if received and first and last:
        latencies.sort()
        span = max(last - first, 1e-9)
        p50 = latencies[len(latencies) // 2]
        p95 = latencies[int(len(latencies) * 0.95)]
        out.say(
            f"done: {received} recommendations, {received / span:.0f}/s, "
            f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        )
    return 0 if received else 1


def _warm_up(
    producer: Any,
    consumer: Any,
    names: TopicNames,
    worker: subprocess.Popen[bytes],
    stop: threading.Event,
    timeout: float,
) -> bool:
    """Ask for one recommendation and wait for the answer: then the whole path is up."""
    request_id = f"warm-up-{time.time_ns()}"
    request = {"request_id": request_id, "user_id": "warm-up", "ts": int(time.time() * 1000)}
    producer.send(names.requests, key=b"warm-up", value=_json(request))
    producer.flush()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set() and worker.poll() is None:
        for records in consumer.poll(timeout_ms=200).values():
            if any(json.loads(r.value).get("source_event_id") == request_id for r in records):
                return True
    return False


def _feed(
    producer: Any,
    names: TopicNames,
    events: list[dict[str, Any]],
    rate: float,
    stop: threading.Event,
    sent: threading.Event,
    out: _Printer,
) -> None:
    gap = 1.0 / rate if rate > 0 else 0.0
    half = len(events) // 2
    for n, event in enumerate(events):
        if stop.is_set():
            break
        if n == half:
            producer.send(names.items, key=NEW_ITEM["item_id"].encode(), value=_json(NEW_ITEM))
            out.say(f"*** new item published: {NEW_ITEM['title']!r} ***")
        live = {**event, "ts": int(time.time() * 1000)}
        producer.send(names.interactions, key=event["user_id"].encode(), value=_json(live))
        if gap:
            producer.flush()
            time.sleep(gap)
    producer.flush()
    sent.set()


def _feedback(
    producer: Any,
    names: TopicNames,
    rec: dict[str, Any],
    category: dict[str, Any],
    interests: dict[str, set[str]],
    rng: random.Random,
) -> None:
    # The simulated user clicks a recommendation from one of their interest categories.
    if not rec["items"] or rng.random() > 0.5:
        return
    choice = rng.choice(rec["items"][:5])["item_id"]
    label = int(category.get(choice) in interests.get(rec["user_id"], set()))
    feedback = {
        "event_id": f"fb-{rec['recommendation_id']}",
        "user_id": rec["user_id"],
        "item_id": choice,
        "recommendation_id": rec["recommendation_id"],
        "label": label,
        "ts": int(time.time() * 1000),
    }
    producer.send(names.feedback, key=rec["user_id"].encode(), value=_json(feedback))


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class _Printer:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)

    def show(self, line: str) -> None:
        """A per-recommendation line, hidden with ``--quiet``."""
        if not self.quiet:
            self.say(line)
