"""The bare Faust agent benchmark: codecs, variant parsing, and one real run with garbage input."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.faust_floor import (
    DECODE_ERRORS,
    DECODERS,
    ENCODERS,
    _id_of,
    make_decoder,
    make_encoder,
)
from bench.faust_variants import _run_variant, parse_variant
from promptrec.streams.clients import make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

GOOD = b'{"event_id":"e-1","user_id":"u-1","item_id":"i-1","type":"click","ts":1760000000000}'
GARBAGE = [b"\xff\xfe", b"", b"{", b"[1,2]", b'{"event_id":"e-2"}', b'"just a string"']


@pytest.mark.parametrize("name", [d for d in DECODERS if d != "none"])
def test_every_decoder_reads_an_interaction_and_rejects_garbage(name: str) -> None:
    decode = make_decoder(name)
    event_id, ts = _id_of(decode(GOOD))
    assert (event_id, ts) == ("e-1", 1760000000000)
    for raw in GARBAGE:
        if name in ("json", "orjson") and raw in (
            b"[1,2]",
            b'{"event_id":"e-2"}',
            b'"just a string"',
        ):
            continue  # untyped JSON parsers accept any JSON; the typed ones must not
        with pytest.raises(DECODE_ERRORS):
            decode(raw)


def test_every_encoder_writes_the_same_recommendation() -> None:
    docs = {name: make_encoder(name)("rec-1", "e-1", 1760000000000) for name in ENCODERS}
    assert json.loads(docs["minimal"]) == {"s": "e-1"}
    full = [json.loads(docs[n]) for n in ("stdlib", "orjson", "msgspec")]
    assert full[0] == full[1] == full[2]
    assert full[0]["source_event_id"] == "e-1" and len(full[0]["items"]) == 10


def test_unknown_codec_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown decoder"):
        make_decoder("yaml")
    with pytest.raises(ValueError, match="unknown encoder"):
        make_encoder("pickle")


def test_parse_variant() -> None:
    assert parse_variant("") == {}
    assert parse_variant("decode=orjson, uuid=on") == {"decode": "orjson", "uuid": "on"}
    assert parse_variant("table=50") == {"table": "50"}
    for bad in [
        "decode",
        "decode=yaml",
        "colour=red",
        "mode=take,,drain=slow",
        "table=-1",
        "table=x",
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


@pytest.mark.integration
@pytest.mark.slow
def test_bare_agent_answers_every_event_and_counts_garbage(
    make_settings: Callable[..., StreamSettings], tmp_path: Path
) -> None:
    settings = make_settings(partitions=2)
    ensure_topics(settings)
    topic = TopicNames.from_settings(settings).interactions
    producer = make_producer(settings, linger_ms=0)
    for n in range(40):
        producer.send(topic, key=f"u{n}".encode(), value=GOOD.replace(b"e-1", b"e-%d" % n))
    for raw in GARBAGE:  # the agent must count these and keep going
        producer.send(topic, key=b"bad", value=raw)
    producer.flush()
    producer.close()
    n = 40 + len(GARBAGE)
    options = {
        "decode": "pydantic",
        "encode": "stdlib",
        "uuid": "on",
        "drain": "fast",
        "table": "5",
    }
    doc = _run_variant(settings, tmp_path, options, n, timeout=180, profile=None)
    assert doc["events"] == n and doc["bad"] == len(GARBAGE)
    assert doc["events_per_s"] > 0 and doc["cpu_ms_per_event"] > 0
    assert (doc["decode"], doc["drain"], doc["table"]) == ("pydantic", "fast", 5)


@pytest.mark.parametrize("env", [{}, {"PERF_FAST_DRAIN": "1", "PERF_SENSORS_OFF": "1"}])
def test_worker_patch_applies_only_when_asked(env: dict[str, str]) -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import faust\n"
        "from faust.transport.consumer import Consumer\n"
        "app = faust.App('x', autodiscover=False)\n"
        "print(Consumer.wait_first.__qualname__, app.sensors.on_stream_event_in.__qualname__)\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERF_")}
    path = f"{root / 'bench' / 'worker_patch'}{os.pathsep}{root}"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    drain, sensor = done.stdout.split()
    if env:
        assert (drain, sensor) == ("_fast_wait_first", "sensors_off.<locals>.noop")
    else:
        assert drain == "Service.wait_first" and "noop" not in sensor
