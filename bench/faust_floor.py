"""A bare Faust agent with the worker's app configuration: where Faust's per-event cost goes.

``python -m bench.faust_floor --broker B --topic-prefix P --input T --output T --expect N ...``
runs one Faust worker (:func:`promptrec.streams.app.make_app`, the worker's own configuration)
with a single agent on ``--input``: it batches with ``take_events(batch_size, within)`` (or
``take``, or ``noack_take``), optionally decodes each value, builds one output record per event
and sends each batch with the worker's :class:`~promptrec.streams.publisher.RecommendationPublisher`
(a separate batching aiokafka producer, awaited before the batch is acknowledged). There is no
recommender: the difference to :mod:`bench.floor` (raw aiokafka) is Faust, and each knob below
switches off or swaps one candidate cost:

* ``--mode``: ``take_events`` (the worker), ``take`` (values), ``noack_take`` (no acks, no
  offsets committed: the cost of per-event acks and offset tracking).
* ``--sensors off``: Faust's sensor hooks (the Monitor's per-message and per-event bookkeeping)
  become no-ops.
* ``--decode``: ``none``, ``pydantic`` (the worker's ``decode_interaction``), ``json`` (stdlib
  ``json.loads``), ``orjson``, ``msgspec`` (typed ``Struct`` decode).
* ``--drain fast``: Faust's fetch loop without two tasks per message (the worker's own
  :func:`promptrec.streams.faust_fast.install_fast_handoff`).
* ``--table N``: like the worker's history table, one changelogged write per distinct key per
  batch of a history value with N entries (the worker keeps up to ``history_len`` = 50), through
  a Faust table with the worker's serializer and producer settings (``producer_batch_bytes``).
* ``--encode``: ``minimal`` (a 20-byte record), ``stdlib`` (the worker's ``recommendation_json``
  with 10 items), ``orjson``, ``msgspec``; ``--uuid off``: no ``uuid4().hex`` per event.

Once ``--expect`` events are published it writes one JSON line to ``--result`` (events/s from
the first event in the agent to the last ack, CPU ms/event of the whole process) and stops.
Records it cannot decode are counted as ``bad`` and still answered, so garbage never stalls it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptrec.events.exceptions import InvalidEvent
from promptrec.streams.faust_fast import install_fast_handoff, sensors_off

if TYPE_CHECKING:
    from promptrec.events.schemas import Limits

__all__ = [
    "DECODERS",
    "DECODE_ERRORS",
    "ENCODERS",
    "MODES",
    "main",
    "make_decoder",
    "make_encoder",
]

# What the decoders raise on garbage: the worker's InvalidEvent; stdlib json, orjson and msgspec
# errors are ValueErrors.
DECODE_ERRORS = (InvalidEvent, ValueError)

MODES = ("take_events", "take", "noack_take")
DECODERS = ("none", "pydantic", "json", "orjson", "msgspec")
ENCODERS = ("minimal", "stdlib", "orjson", "msgspec")
# A top-10 recommendation, as the worker publishes it.
_ITEMS = [(f"bi-{n:07d}", 0.9 - n / 100) for n in range(10)]


def make_decoder(name: str, limits: Limits | None = None) -> Callable[[bytes], Any]:
    """A value decoder by name; each raises :data:`DECODE_ERRORS` on garbage.

    ``limits``: the worker's input limits, for ``pydantic`` (default: the default settings').
    """
    if name == "none":
        return lambda raw: raw
    if name == "pydantic":
        from promptrec.events.schemas import decode_interaction
        from promptrec.streams.settings import StreamSettings

        checks = limits or StreamSettings().limits(2000)
        return lambda raw: decode_interaction(raw, checks)
    if name == "json":
        return json.loads
    if name == "orjson":
        import orjson

        return orjson.loads
    if name == "msgspec":
        import msgspec

        class Interaction(msgspec.Struct):
            event_id: str
            user_id: str
            item_id: str
            type: str
            ts: int
            value: float | None = None

        decoder = msgspec.json.Decoder(Interaction)
        return decoder.decode
    raise ValueError(f"unknown decoder {name!r}; one of {', '.join(DECODERS)}")


def make_encoder(name: str) -> Callable[[str, str, int], bytes]:
    """``(recommendation_id, source_event_id, source_ts) -> bytes`` by name."""
    from promptrec.streams.publisher import recommendation_json

    def record(rec_id: str, source_id: str, ts: int) -> dict[str, Any]:
        return {
            "recommendation_id": rec_id, "user_id": "bu-0000001",
            "items": [{"item_id": i, "score": s} for i, s in _ITEMS], "model_version": 1,
            "source": "interaction", "source_event_id": source_id, "source_ts": ts,
            "generated_at": ts, "worker": "bench:1",
        }  # fmt: skip

    if name == "minimal":
        return lambda rec_id, source_id, ts: b'{"s":"%s"}' % source_id.encode()
    if name == "stdlib":
        return lambda rec_id, source_id, ts: recommendation_json(
            rec_id, "bu-0000001", _ITEMS, 1, "interaction", source_id, ts, ts, "bench:1"
        )
    if name == "orjson":
        import orjson

        return lambda rec_id, source_id, ts: orjson.dumps(record(rec_id, source_id, ts))
    if name == "msgspec":
        import msgspec

        enc = msgspec.json.Encoder()
        return lambda rec_id, source_id, ts: enc.encode(record(rec_id, source_id, ts))
    raise ValueError(f"unknown encoder {name!r}; one of {', '.join(ENCODERS)}")


def _history_value(n: int) -> dict[str, Any]:
    """A history table value of ``n`` interactions, shaped like ``UserHistory.to_value``."""
    return {
        "items": [f"bi-{i:07d}" for i in range(n)],
        "ts": [1760000000000 + i for i in range(n)],
        "event_ids": [f"r0-{i}" for i in range(n)],
        "positions": [f"0:{i}" for i in range(n)],
        "count": n,
        "feedback": [],
    }


def _id_of(value: Any) -> tuple[str, int]:
    if isinstance(value, dict):
        return str(value.get("event_id", "?")), int(value.get("ts", 0) or 0)
    if hasattr(value, "event_id"):
        return str(value.event_id), int(value.ts)
    return "?", 0


def run(args: argparse.Namespace) -> None:
    """Build the app and run the Faust worker until ``args.expect`` events are published."""
    import faust
    from faust.streams import _current_event

    from promptrec.streams.app import make_app
    from promptrec.streams.publisher import RecommendationPublisher
    from promptrec.streams.settings import StreamSettings

    # Stock Faust as the baseline: the knobs below switch the worker's fast path on piecewise.
    settings = StreamSettings(
        broker=args.broker, topic_prefix=args.topic_prefix, app_id=args.app_id,
        state_dir=Path(args.state_dir), faust_fast_path=False,
    )  # fmt: skip
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = make_app(settings)
    if args.sensors == "off":
        sensors_off(app)
    if args.drain == "fast":
        install_fast_handoff(True)
    decode = make_decoder(args.decode, settings.limits(2000))
    encode = make_encoder(args.encode)
    new_id = (lambda: uuid.uuid4().hex) if args.uuid == "on" else (lambda: "r")
    publisher = RecommendationPublisher(settings, args.output)
    topic = app.topic(args.input, key_serializer="raw", value_serializer="raw")
    table = None
    if args.table > 0:
        table = app.Table("history", default=None, partitions=settings.partitions, key_type=str)
    history = _history_value(args.table)
    state: dict[str, Any] = {"done": 0, "bad": 0, "batches": 0, "t0": 0.0, "cpu0": 0.0}
    within = settings.batch_within_ms / 1000.0

    def write_history(events: Sequence[Any]) -> None:
        # One write per distinct key, to the changelog partition of one of its events, as the
        # worker's recommend agent does (agents/base.py binds the write to the current event).
        last: dict[bytes, Any] = {e.key or b"": e for e in events}
        for key, event in last.items():
            _current_event.set(weakref.ref(event))
            table[key.decode(errors="replace")] = history  # type: ignore[index]

    async def handle(values: Sequence[Any], keys: Sequence[Any]) -> None:
        if not state["t0"]:
            state["t0"], state["cpu0"] = time.perf_counter(), time.process_time()
            # Tells the driver to attach its profiler now: after imports and the group join.
            Path(args.result).with_suffix(".started").touch()
        records = []
        for raw, key in zip(values, keys, strict=True):
            try:
                # A tombstone (None) is garbage too, for every decoder.
                source_id, ts = _id_of(decode(b"" if raw is None else raw))
            except DECODE_ERRORS:
                state["bad"] += 1
                source_id, ts = "bad", 0
            records.append((key or b"", encode(new_id(), source_id, ts)))
        await publisher.publish_many(records)
        state["done"] += len(records)
        state["batches"] += 1
        if state["done"] >= args.expect:
            _finish(args, state)

    async def agent(stream: faust.StreamT) -> None:
        size = settings.batch_size
        if args.mode == "take":
            async for values in stream.take(size, within=within):
                await handle(values, [b""] * len(values))
        elif args.mode == "noack_take":
            async for events in stream.noack_take(size, within=within):  # type: ignore[attr-defined]
                await handle([e.value for e in events], [e.key for e in events])
        else:
            async for events in stream.take_events(size, within=within):  # type: ignore[attr-defined]
                if table is not None:
                    write_history(events)
                await handle([e.value for e in events], [e.key for e in events])

    app.agent(topic, name=f"{app.conf.id}.floor")(agent)
    worker = faust.Worker(app, loglevel="warn", quiet=True)
    with contextlib.suppress(SystemExit):  # raised by the worker's clean stop
        worker.execute_from_commandline()


def _finish(args: argparse.Namespace, state: dict[str, Any]) -> None:
    seconds = time.perf_counter() - state["t0"]
    cpu = time.process_time() - state["cpu0"]
    done = state["done"]
    result = {
        "mode": args.mode, "sensors": args.sensors, "drain": args.drain, "decode": args.decode,
        "encode": args.encode, "uuid": args.uuid, "table": args.table, "events": done,
        "bad": state["bad"], "batches": state["batches"], "mean_batch": done / state["batches"],
        "seconds": seconds,
        "events_per_s": done / seconds if seconds > 0 else 0.0,
        "cpu_ms_per_event": 1000.0 * cpu / done,
    }  # fmt: skip
    Path(args.result).write_text(json.dumps(result) + "\n")
    # Faust's worker stops cleanly on SIGTERM (the result is written already).
    os.kill(os.getpid(), signal.SIGTERM)


def parser() -> argparse.ArgumentParser:
    """Arguments of the bare Faust agent process."""
    p = argparse.ArgumentParser(prog="python -m bench.faust_floor")
    p.add_argument("--broker", required=True)
    p.add_argument("--topic-prefix", required=True)
    p.add_argument("--app-id", required=True, help="a fresh Faust app id (consumer group)")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--input", required=True, help="input topic (full name)")
    p.add_argument("--output", required=True, help="output topic (full name)")
    p.add_argument("--expect", type=int, required=True, help="stop after this many events")
    p.add_argument("--result", required=True, help="file for the JSON result line")
    p.add_argument("--mode", choices=MODES, default="take_events")
    p.add_argument("--sensors", choices=["on", "off"], default="on")
    p.add_argument("--decode", choices=DECODERS, default="none")
    p.add_argument("--encode", choices=ENCODERS, default="minimal")
    p.add_argument("--uuid", choices=["on", "off"], default="off")
    p.add_argument("--drain", choices=["faust", "fast"], default="faust")
    p.add_argument("--table", type=int, default=0, metavar="N",
                   help="history-table writes of N entries per key, batch (0: none)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; Faust's worker reads ``sys.argv``, so it is reset to the program name."""
    args = parser().parse_args(argv)
    sys.argv = sys.argv[:1]
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
