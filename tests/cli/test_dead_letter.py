"""``promptrec dead-letter list`` and ``replay`` on the real embedded broker.

Dead-letter records are written the way the worker writes them (``DeadLetter.build`` +
``to_json_bytes``, keyed by the original key); the original topics are read back with a plain
kafka-python consumer. The last test dead-letters an interaction in a real worker (unknown item),
publishes the item, replays, and gets the worker's answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from promptrec.cli.main import main
from promptrec.events.exceptions import InvalidEvent, ReasonCode
from promptrec.events.schemas import DeadLetter, decode_interaction, to_json_bytes
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics
from tests.pipeline_fixtures import (
    Producer,
    Recorder,
    WorkerProcess,
    catalog_items,
    interaction,
    json_bytes,
)

pytestmark = pytest.mark.integration

Raw = tuple[bytes | None, bytes | None, int]  # key, value, partition


class DeadLetters:
    """Writes records into the dead-letter topic of ``settings``, like the worker does."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.names = TopicNames.from_settings(settings)
        # Batched on purpose: the embedded broker's end offsets then fall short of the end.
        self.producer = KafkaProducer(bootstrap_servers=settings.broker, linger_ms=20)
        self.offset = 0

    def add(
        self,
        value: bytes | None,
        reason: ReasonCode,
        key: bytes | None = b"u1",
        topic: str = "interactions",
        partition: int = 1,
        max_bytes: int = 262144,
        ts: int | None = None,
        detail: str = "",
    ) -> DeadLetter:
        record = DeadLetter.build(
            topic=self.names.resolve(topic),
            partition=partition,
            offset=self.offset,
            key=key,
            value=value,
            reason=reason,
            detail=detail or f"{reason} for the test",
            worker="test:1",
            max_bytes=max_bytes,
            ts=ts,
        )
        self.offset += 1
        self.raw(to_json_bytes(record), key)
        return record

    def raw(self, value: bytes | None, key: bytes | None = None) -> None:
        """Anything at all, into dead-letter partition 0 (offsets then count 0, 1, 2, ...)."""
        self.producer.send(self.names.dead_letter, key=key, value=value, partition=0)

    def flush(self) -> None:
        self.producer.flush()


@pytest.fixture
def settings(make_settings: Callable[..., StreamSettings]) -> StreamSettings:
    s = make_settings(partitions=2)
    ensure_topics(s)
    return s


@pytest.fixture
def dead(settings: StreamSettings) -> Iterator[DeadLetters]:
    d = DeadLetters(settings)
    yield d
    d.producer.close()


def read_topic(settings: StreamSettings, logical: str, timeout: float = 30.0) -> list[Raw]:
    """Every record of a topic up to the fetch high watermark of each partition."""
    topic = TopicNames.from_settings(settings).resolve(logical)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    out: list[Raw] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while True:
            for batch in consumer.poll(timeout_ms=200).values():
                out += [(r.key, r.value, r.partition) for r in batch]
            highs = [consumer.highwater(tp) for tp in tps]
            if all(
                h is not None and consumer.position(tp) >= h
                for tp, h in zip(tps, highs, strict=True)
            ):
                return out
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
    finally:
        consumer.close()


def cli(
    capsys: pytest.CaptureFixture[str], settings: StreamSettings, *args: str
) -> tuple[int, str, str]:
    conn = ["--broker", settings.broker, "--topic-prefix", settings.topic_prefix]
    code = main(["dead-letter", *args, *conn, "--idle-timeout", "20", "--connect-timeout", "10"])
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(
    capsys: pytest.CaptureFixture[str], settings: StreamSettings, *args: str
) -> dict[str, Any]:
    code, out, err = cli(capsys, settings, *args, "--json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def event(**kw: Any) -> bytes:
    return json_bytes(interaction("u1", "i1", **kw))


def test_replay_resends_transient_reasons_with_original_bytes_key_and_partition(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    retry = [
        (b"u1", event(), ReasonCode.unknown_item, 1),
        (None, b"\xff\xfebinary, not UTF-8", ReasonCode.processing_error, 0),  # base64 in DL
        (b"\x00\xffkey", event(), ReasonCode.unknown_user, 1),
        (b"u2", b"", ReasonCode.processing_error, 0),  # empty, not null
    ]
    for key, value, reason, partition in retry:
        dead.add(value, reason, key=key, partition=partition)
    dead.add(event(ts=1767225600), ReasonCode.bad_timestamp)
    dead.add(b"{not json", ReasonCode.invalid_json)
    big = event(pad="x" * 500)
    dead.add(big, ReasonCode.unknown_item, max_bytes=100)  # truncated
    dead.flush()

    doc = cli_json(capsys, settings, "replay")
    assert doc["complete"] and not doc["dry_run"]
    assert (doc["selected"], doc["sent"], doc["skipped"], doc["failed"]) == (7, 4, 3, 0)
    assert doc["by_reason"] == {
        "bad_timestamp": {"data error": 1},
        "invalid_json": {"data error": 1},
        "processing_error": {"sent": 2},
        "unknown_item": {"sent": 1, "truncated": 1},
        "unknown_user": {"sent": 1},
    }
    # Data errors are counted per group; the records that need a look are listed one by one.
    assert [r["why"][:50] for r in doc["skipped_records"]] == [
        f"truncated: only a prefix of the original was kept ({len(big)} bytes"[:50]
    ]
    assert sorted(read_topic(settings, "interactions"), key=repr) == sorted(
        [(k, v, p) for k, v, _, p in retry], key=repr
    )


def test_data_errors_are_sent_only_when_named_and_truncated_never(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    seconds = event(ts=1767225600)
    dead.add(seconds, ReasonCode.bad_timestamp)
    dead.add(event(ts=1767225601, pad="y" * 300), ReasonCode.bad_timestamp, max_bytes=50)
    dead.add(event(), ReasonCode.unknown_item)
    dead.add(b'{"x": 1}', ReasonCode.schema, topic="feedback")
    dead.flush()

    doc = cli_json(capsys, settings, "replay", "--reason", "bad_timestamp", "--reason", "schema")
    assert (doc["selected"], doc["sent"]) == (3, 2)  # unknown_item is not selected
    assert doc["by_reason"]["bad_timestamp"] == {"sent": 1, "truncated": 1}
    assert read_topic(settings, "interactions") == [(b"u1", seconds, 1)]
    assert read_topic(settings, "feedback") == [(b"u1", b'{"x": 1}', 1)]


def test_dry_run_sends_nothing(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        dead.add(event(), ReasonCode.unknown_item)
    dead.add(event(), ReasonCode.schema)
    dead.flush()
    code, out, err = cli(capsys, settings, "replay", "--dry-run")
    assert code == 0, err
    assert "would send 3, not sent 1 (dry run: nothing was sent)" in out
    assert "data error: send with --reason schema" in out
    doc = cli_json(capsys, settings, "replay", "--dry-run")
    assert (doc["sent"], doc["would_send"], doc["skipped"]) == (0, 3, 1)
    assert read_topic(settings, "interactions") == []


def test_topic_offset_and_time_filters(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    base = 1767225600000
    values = [event(n=i) for i in range(6)]
    for i, value in enumerate(values):  # dead-letter offsets 0..5, one minute apart
        topic = "items" if i == 5 else "interactions"
        dead.add(value, ReasonCode.processing_error, topic=topic, ts=base + i * 60_000)
    dead.flush()

    doc = cli_json(capsys, settings, "replay", "--dry-run", "--topic", "items")
    assert doc["would_send"] == 1 and doc["groups"][0]["original_topic"].endswith("items")
    names = TopicNames.from_settings(settings)
    doc = cli_json(capsys, settings, "replay", "--dry-run", "--topic", names.items)
    assert doc["would_send"] == 1
    doc = cli_json(capsys, settings, "list", "--from-offset", "1", "--to-offset", "0:3")
    assert doc["total"] == 3 and doc["partitions"]["0"]["start"] == 1
    doc = cli_json(capsys, settings, "list", "--from-offset", "1:0", "--from-offset", "4")
    assert doc["total"] == 2  # the partition-0 bound is the overall one: offsets 4 and 5
    doc = cli_json(capsys, settings, "list", "--from-offset", "99")
    assert doc["total"] == 0
    doc = cli_json(
        capsys, settings, "list", "--since", "2026-01-01T00:01:00Z", "--until", str(base + 120_000)
    )
    assert doc["total"] == 2
    doc = cli_json(capsys, settings, "replay", "--to-offset", "1", "--topic", "interactions")
    assert doc["sent"] == 2
    assert [v for _, v, _ in read_topic(settings, "interactions")] == values[:2]


def test_garbage_in_the_dead_letter_topic_is_reported_and_skipped(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    good = dead.add(event(), ReasonCode.unknown_item)
    template = good.model_dump()
    garbage = [
        b"{not json",
        b"\xff\xfe\x00",
        b'["a list"]',
        None,
        json.dumps({"hello": "world"}).encode(),
        json.dumps({**template, "original_topic": ""}).encode(),
        json.dumps({k: v for k, v in template.items() if k != "original_topic"}).encode(),
        json.dumps({**template, "value_text": None, "value_base64": "%%%garbage%%%"}).encode(),
        json.dumps({**template, "value_text": "tampered"}).encode(),
        json.dumps({**template, "original_topic": "t-nobody-made"}).encode(),
    ]
    for value in garbage:
        dead.raw(value, key=b"junk")
    dead.flush()

    code, out, err = cli(capsys, settings, "replay")
    assert code == 0, err
    assert "sent 1, not sent 10" in out
    doc = cli_json(capsys, settings, "replay", "--dry-run")
    whys = [r["why"] for r in doc["skipped_records"]]
    assert sum(w.startswith("unreadable: not a dead-letter record") for w in whys) == 6
    assert "unreadable: original_topic '' is not a topic name" in whys
    assert "unreadable: value_base64 is not valid base64" in whys
    assert any(w.startswith("unreadable: value is 8 bytes") for w in whys)
    assert "no such topic: t-nobody-made does not exist" in whys
    assert read_topic(settings, "interactions") == [(b"u1", event_bytes(good), 1)]
    listed = cli_json(capsys, settings, "list")
    counts = {(g["reason"], g["count"]) for g in listed["groups"]}
    assert counts == {("unreadable", 7), ("unknown_item", 3), ("unknown_item", 1)}


def event_bytes(record: DeadLetter) -> bytes:
    assert record.value_text is not None
    return record.value_text.encode()


def test_list_makes_a_flood_obvious(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = settings.limits()
    for i in range(200):  # a producer that sends ts in seconds, rejected by the real decoder
        raw = event(ts=1767225600 + i)
        with pytest.raises(InvalidEvent) as info:
            decode_interaction(raw, limits)
        dead.add(raw, info.value.reason, detail=info.value.detail, ts=1767225600000 + i)
    for _ in range(5):
        dead.add(event(item_id="late"), ReasonCode.unknown_item, ts=1767225700000)
    dead.flush()

    code, out, err = cli(capsys, settings, "list", "--examples", "2")
    assert code == 0, err
    topic = TopicNames.from_settings(settings).interactions
    assert (
        f"hint: 200 of 205 records (98 %) are bad_timestamp on {topic}: ts looks like epoch "
        "seconds; ts must be epoch milliseconds (ts * 1000)"
    ) in out
    assert "ts 1767225600 looks like epoch seconds; ts must be epoch milliseconds" in out
    doc = cli_json(capsys, settings, "list", "--examples", "2")
    assert doc["total"] == 205  # all of them, although the broker's end offsets fall short
    top, second = doc["groups"]
    assert (top["reason"], top["count"], top["percent"]) == ("bad_timestamp", 200, 97.6)
    assert (top["first_ts"], top["last_ts"]) == (1767225600000, 1767225600199)
    assert len(top["examples"]) == 2 and (second["reason"], second["count"]) == ("unknown_item", 5)


def test_read_stops_at_the_end_it_found_while_writers_go_on(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(20):
        dead.add(event(), ReasonCode.unknown_item)
    dead.flush()
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.wait(0.02):
            dead.add(event(), ReasonCode.unknown_item)
            dead.flush()

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        doc = cli_json(capsys, settings, "list")
    finally:
        stop.set()
        writer.join()
    assert doc["complete"] and 20 <= doc["total"] <= dead.offset


@pytest.mark.slow  # 17 MB through kafka-python twice: about 20 s here
def test_a_failed_send_is_reported_and_exits_1(
    settings: StreamSettings, dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    # 17 MB, kept whole (a large dead_letter_max_bytes): more than replay's 16 MB request limit.
    dead.producer.config["max_request_size"] = 64 << 20
    dead.add(b'"' + b"x" * (17 << 20) + b'"', ReasonCode.processing_error, max_bytes=32 << 20)
    small = dead.add(event(), ReasonCode.processing_error)
    dead.flush()
    code, out, err = cli(capsys, settings, "replay")
    assert code == 1, err
    assert "  not sent 0:0: failed: " in out and "sent 1, not sent 1" in out
    assert [v for _, v, _ in read_topic(settings, "interactions")] == [event_bytes(small)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--reason", "nope"], "argument --reason: invalid choice: 'nope'"),
        (["list", "--from-offset", "x"], "expected OFFSET or PARTITION:OFFSET, got 'x'"),
        (["list", "--to-offset", "-3"], "must be >= 0"),
        (["list", "--since", "yesterday"], "expected epoch milliseconds or an ISO time"),
        (["list", "--since", "1767225600"], "looks like epoch seconds"),
        (["list", "--since", "2026-02-01", "--until", "2026-01-01"], "is after --until"),
        (["list", "--from-offset", "5", "--to-offset", "2"], "--from-offset 5 is after"),
        (["replay", "--topic", "bad name!"], "--topic: invalid topic name 'bad name!'"),
        (["list", "--examples", "-1"], "must be >= 0"),
        (["replay", "--idle-timeout", "0"], "must be a positive number"),
        (["list", "--topic-prefix", "bad prefix"], "topic_prefix"),
    ],
)
def test_bad_flags_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dead-letter", *args, "--broker", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_runtime_failures_exit_1(
    make_settings: Callable[..., StreamSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    s = make_settings()  # no topics created
    code, _, err = cli(capsys, s, "list")
    assert code == 1 and f"topic {s.topic_prefix}dead-letter does not exist" in err
    assert main(["dead-letter", "replay", "--broker", "127.0.0.1:1", "--connect-timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Kafka broker 127.0.0.1:1" in err and "Traceback" not in err


@pytest.mark.slow
def test_replayed_interaction_is_answered_by_a_real_worker(
    e2e_settings: StreamSettings, worker: WorkerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = Producer(e2e_settings)
    recs = Recorder(e2e_settings, f"{e2e_settings.topic_prefix}recommendations")
    dls = Recorder(e2e_settings, f"{e2e_settings.topic_prefix}dead-letter")
    try:
        items = catalog_items()
        for item in items:
            producer.send("items", item["item_id"], item)
        producer.flush()
        worker.start().wait_ready()
        late = f"late-{uuid.uuid4().hex[:6]}"
        early = interaction("u-late", late)
        producer.send("interactions", "u-late", early)
        producer.flush()

        def mine(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in records if early["event_id"] in (r.get("value_text") or "")]

        dls.wait_for(lambda rs: bool(mine(rs)))
        assert [r["reason"] for r in mine(dls.records)] == ["unknown_item"]
        item = {"item_id": late, "title": "Alpine hiking poles", "text": "For steep trails."}
        producer.send("items", late, item)
        producer.flush()
        deadline = time.monotonic() + 120
        while worker.metric("promptrec_index_items") < len(items) + 1:
            assert time.monotonic() < deadline, "the late item was never indexed"
            time.sleep(0.5)

        code, out, err = cli(capsys, e2e_settings, "replay")
        assert code == 0, err
        assert "sent 1, not sent 0" in out
        found = recs.wait_for(lambda rs: any(r["source_event_id"] == early["event_id"] for r in rs))
        answer = next(r for r in found if r["source_event_id"] == early["event_id"])
        assert answer["user_id"] == "u-late" and late not in {i["item_id"] for i in answer["items"]}
        assert answer["source_ts"] == early["ts"]
    finally:
        producer.close()
        recs.close()
        dls.close()


@pytest.mark.parametrize("action", ["list", "replay"])
def test_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letter", action, "--help"]) == 0
    assert "--from-offset" in capsys.readouterr().out
