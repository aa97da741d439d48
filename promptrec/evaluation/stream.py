"""``promptrec eval stream``: prequential (test-then-learn) replay through a broker and a worker.

Set-up: an embedded broker, the pipeline topics under a fresh prefix, the catalog (items, user
profiles) published first, then one real worker subprocess (``python -m promptrec worker``,
optionally loading a ``--checkpoint``); the replay starts when the worker's metrics say the
catalog is loaded.

Replay and pacing. Interactions are sent in timestamp order. The hit of event ``e`` of user ``u``
is whether ``e.item`` is in the last recommendation the worker published for ``u`` before ``e``
was sent. To make "before" well defined and independent of machine speed, the replay waits for the
recommendation of ``u``'s previous event (its ``source_event_id``) before sending ``u``'s next
event; meanwhile it keeps sending other users' events: it scans a look-ahead window of the next
``lookahead`` unsent events in timestamp order and sends every event whose user has nothing
pending. A user's first event is preceded by a recommendation request (answered from popularity,
or from the profile with a profile-fused checkpoint), so every event is scored. Events of one user
are never reordered; across users the order deviates from strict timestamp order by at most the
look-ahead window (documented in the results ``protocol``).

Metrics: HR@10 and NDCG@10 of the model overall and per time window (equal spans of event time),
the same for a recent-popularity baseline (:class:`RecentPopularity`, the worker's fallback,
updated with the events in send order, the user's seen items excluded, scored just before each
event), the cold-start slice (events whose item had fewer than 5 earlier interactions in the
stream) and the events/s achieved.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StreamScore", "replay_worker", "run_replay", "run_stream_eval", "select_events"]

log = logging.getLogger(__name__)

COLD_THRESHOLD = 5  # an event is cold when its item had fewer earlier interactions
K = 10


@dataclass
class StreamScore:
    """Running HR@10 / NDCG@10 of one method on a set of events."""

    hits: float = 0.0
    gains: float = 0.0
    events: int = 0

    def add(self, item: str, ranked: Sequence[str]) -> None:
        self.events += 1
        top = list(ranked[:K])
        if item in top:
            self.hits += 1.0
            self.gains += 1.0 / math.log2(top.index(item) + 2)

    def to_dict(self) -> dict[str, float]:
        n = max(self.events, 1)
        return {"HR@10": self.hits / n, "NDCG@10": self.gains / n, "events": self.events}


@dataclass
class _Tally:
    overall: dict[str, StreamScore] = field(default_factory=dict)
    cold: dict[str, StreamScore] = field(default_factory=dict)
    windows: list[dict[str, StreamScore]] = field(default_factory=list)

    def add(self, method: str, item: str, ranked: Sequence[str], cold: bool, window: int) -> None:
        self.overall.setdefault(method, StreamScore()).add(item, ranked)
        if cold:
            self.cold.setdefault(method, StreamScore()).add(item, ranked)
        self.windows[window].setdefault(method, StreamScore()).add(item, ranked)


def _metrics(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_file: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")
        try:
            if _metrics(port).get("promptrec_catalog_ready") == 1.0:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"worker not ready after {timeout:.0f} s (log: {log_file})")


def run_replay(
    settings: Any,
    dataset: Any,
    events: Sequence[Any],
    n_windows: int = 10,
    timeout: float = 60.0,
    lookahead: int = 512,
    progress: bool = True,
    on_recommendation: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Replays ``events`` (time-ordered :class:`Interaction`) against a running worker.

    ``on_recommendation`` sees every decoded recommendation as it arrives (``eval ab`` turns
    them into simulated feedback).

    Returns the ``stream`` section of results.json.
    """
    from tqdm import tqdm

    from promptrec.events.schemas import Limits, decode_recommendation
    from promptrec.serving.popularity import RecentPopularity
    from promptrec.streams.clients import make_consumer, make_producer
    from promptrec.streams.topics import TopicNames

    names = TopicNames.from_settings(settings)
    producer = make_producer(settings, linger_ms=0)
    consumer = make_consumer(settings, names.recommendations)
    limits = Limits(max_bytes=1 << 22, min_ts=0)
    t_min, t_max = events[0].ts, events[-1].ts
    span = max(t_max - t_min, 1)
    tally = _Tally(windows=[{} for _ in range(n_windows)])
    popularity = RecentPopularity()
    counts: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    latest: dict[str, list[str]] = {}
    pending: dict[str, str] = {}  # user -> event/request id whose recommendation is awaited
    unsent = deque(range(len(events)))
    bar = tqdm(total=len(events), desc="replay", unit="event", disable=not progress)
    t0 = time.perf_counter()
    last_progress = time.monotonic()
    try:
        while unsent:
            sent_now = 0
            blocked: set[str] = set()
            for pos, idx in enumerate(list(unsent)[:lookahead]):
                e = events[idx]
                if e.user_id in pending or e.user_id in blocked:
                    blocked.add(e.user_id)  # keep this user's order
                    continue
                if e.user_id not in latest:
                    # First event of a user: ask for a recommendation first.
                    rid = f"r-{idx}"
                    request = {"request_id": rid, "user_id": e.user_id, "k": K, "ts": e.ts}
                    producer.send(names.requests, key=e.user_id.encode(), value=_j(request))
                    pending[e.user_id] = rid
                    blocked.add(e.user_id)
                    continue
                cold = counts.get(e.item_id, 0) < COLD_THRESHOLD
                window = min(int((e.ts - t_min) * n_windows / span), n_windows - 1)
                exclude = seen.setdefault(e.user_id, set())
                pop = [i for i, _ in popularity.top(K, exclude, lambda _i: True)]
                tally.add("promptrec", e.item_id, latest[e.user_id], cold, window)
                tally.add("recent-pop", e.item_id, pop, cold, window)
                eid = f"e-{idx}"
                event = {
                    "event_id": eid,
                    "user_id": e.user_id,
                    "item_id": e.item_id,
                    "type": "rating",
                    "ts": e.ts,
                }
                producer.send(names.interactions, key=e.user_id.encode(), value=_j(event))
                pending[e.user_id] = eid
                blocked.add(e.user_id)
                exclude.add(e.item_id)
                counts[e.item_id] = counts.get(e.item_id, 0) + 1
                popularity.add_many([e.item_id])
                unsent.remove(idx) if pos else unsent.popleft()
                sent_now += 1
            producer.flush()
            bar.update(sent_now)
            for batch in consumer.poll(timeout_ms=20 if sent_now else 100).values():
                for record in batch:
                    rec = decode_recommendation(record.value, limits, max_ts=1 << 62)
                    if on_recommendation is not None:
                        on_recommendation(rec)
                    latest[rec.user_id] = [s.item_id for s in rec.items]
                    if pending.get(rec.user_id) == rec.source_event_id:
                        del pending[rec.user_id]
                        last_progress = time.monotonic()
            if sent_now:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout:
                raise RuntimeError(
                    f"no recommendation for {len(pending)} pending users after {timeout:.0f} s"
                )
    finally:
        bar.close()
        producer.close()
        consumer.close()
    seconds = time.perf_counter() - t0
    windows = []
    for w, scores in enumerate(tally.windows):
        entry: dict[str, Any] = {
            "start_ts": t_min + span * w // n_windows,
            "end_ts": t_min + span * (w + 1) // n_windows,
        }
        entry.update({m: s.to_dict() for m, s in scores.items()})
        windows.append(entry)
    return {
        "promptrec": tally.overall["promptrec"].to_dict(),
        "recent-pop": tally.overall["recent-pop"].to_dict(),
        "cold": {m: s.to_dict() for m, s in sorted(tally.cold.items())},
        "events_per_s": len(events) / seconds,
        "events": len(events),
        "seconds": seconds,
        "windows": windows,
    }


def _j(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def select_events(dataset: Any, users: int, limit: int) -> list[Any]:
    """The replayed events: the first ``users`` users' (0: all), then the first ``limit``."""
    events = list(dataset.interactions)
    if users:
        keep = set(dataset.first_users(users))
        events = [e for e in events if e.user_id in keep]
    return events[:limit] if limit else events


def run_stream_eval(args: argparse.Namespace) -> int:
    """The ``promptrec eval stream`` command body."""
    from promptrec.evaluation.datasets import load_dataset

    dataset = load_dataset(args.data, args.format, strict=getattr(args, "strict", False))
    events = select_events(dataset, args.users, args.limit)
    if not events:
        print("promptrec eval stream: error: no events selected", file=sys.stderr)
        return 2
    users = {e.user_id for e in events}
    progress = not args.quiet
    try:
        with replay_worker(
            dataset, users, checkpoint=args.checkpoint, model_dir=args.model_dir, device=args.device
        ) as settings:
            stream = run_replay(
                settings, dataset, events, args.windows, args.timeout, progress=progress
            )
    except RuntimeError as exc:
        print(f"promptrec eval stream: error: {exc}", file=sys.stderr)
        return 1
    results = {
        "dataset": dataset.name,
        "protocol": (
            "prequential test-then-learn replay through the broker and one worker; hit = item "
            "in the last recommendation published for the user before the event (the replay "
            "waits for it); per-user order kept, cross-user look-ahead 512 events; "
            f"cold = item with < {COLD_THRESHOLD} earlier interactions"
        ),
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "stream": stream,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    s = stream
    print(
        f"{s['events']} events at {s['events_per_s']:.1f}/s: promptrec HR@10 "
        f"{s['promptrec']['HR@10']:.4f} NDCG@10 {s['promptrec']['NDCG@10']:.4f}; recent-pop "
        f"HR@10 {s['recent-pop']['HR@10']:.4f} NDCG@10 {s['recent-pop']['NDCG@10']:.4f}"
    )
    print(f"wrote {args.out}")
    if args.plot is not None:
        from promptrec.evaluation.plots import plot_stream

        plot_stream(stream, args.plot)
        print(f"wrote {args.plot}")
    return 0


@contextmanager
def replay_worker(
    dataset: Any,
    users: set[str],
    *,
    checkpoint: Path | None = None,
    model_dir: Path | None = None,
    device: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Any]:
    """An embedded broker, fresh topics with the catalog, one ready worker: yields its settings.

    ``extra_env`` adds worker settings (``eval ab`` passes ``PROMPTREC_EXPERIMENTS_FILE``).

    Raises:
        RuntimeError: The worker exited or did not get ready.
    """
    from promptrec.broker.embedded import EmbeddedBroker, free_port
    from promptrec.streams.settings import StreamSettings
    from promptrec.streams.topics import TopicNames, ensure_topics

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="promptrec-ev-") as tmp:
        port = free_port()
        settings = StreamSettings(
            broker=broker.url,
            topic_prefix=f"ev{uuid.uuid4().hex[:8]}.",
            partitions=1,
            state_dir=Path(tmp) / "state",
            metrics_port=port,
            min_event_ts=0,
        )
        ensure_topics(settings)
        names = TopicNames.from_settings(settings)
        _publish_catalog(settings, names, dataset, users)
        env = {
            **os.environ,
            "PROMPTREC_MIN_EVENT_TS": "0",  # MovieLens-100K is from 1997-98
            "PROMPTREC_PARTITIONS": "1",
            "PROMPTREC_HISTORY_LEN": "1000",  # exclude every seen item, as offline
            "PROMPTREC_RECENT_ITEMS": "50",
            "PROMPTREC_TOP_K": str(K),
            "PROMPTREC_CHECKPOINT_INTERVAL_S": "3600",
            **(extra_env or {}),
        }
        if checkpoint is not None:
            env["PROMPTREC_ENCODER_CHECKPOINT"] = str(checkpoint)
        if model_dir is not None:
            env["PROMPTREC_ENCODER_MODEL_DIR"] = str(model_dir)
        if device:
            env["PROMPTREC_ENCODER_DEVICE"] = device
        log_file = Path(tmp) / "worker.log"
        cmd = [
            sys.executable, "-m", "promptrec", "worker",
            "--broker", settings.broker, "--topic-prefix", settings.topic_prefix,
            "--state-dir", str(settings.state_dir), "--metrics-port", str(port),
            "--log-level", "warn",
        ]  # fmt: skip
        with log_file.open("ab") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_ready(proc, port, log_file, timeout=600.0)
            yield settings
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _publish_catalog(settings: Any, names: Any, dataset: Any, users: set[str]) -> None:
    from promptrec.streams.clients import make_producer

    producer = make_producer(settings)
    try:
        for item in dataset.items:
            producer.send(names.items, key=item.item_id.encode(), value=_j(item.to_event()))
        for user_id, attributes in dataset.users.items():
            if user_id in users and attributes:
                record = {"user_id": user_id, "attributes": _attrs(attributes)}
                producer.send(names.users, key=user_id.encode(), value=_j(record))
        producer.flush()
    finally:
        producer.close()


def _attrs(attributes: dict[str, Any]) -> dict[str, Any]:
    """Profile attributes as the schema accepts them (str, int, float, bool, list of str)."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if isinstance(value, list):
            out[key] = [str(v) for v in value]
        elif isinstance(value, str | int | float | bool):
            out[key] = value
        else:
            out[key] = str(value)
    return out
