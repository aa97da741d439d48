"""The ``promptrec`` CLI: help, usage and settings errors, produce/tail/topics/schema, broker."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from promptrec.broker.embedded import EmbeddedBroker, free_port
from promptrec.cli.main import main
from promptrec.streams.clients import make_consumer, make_producer
from promptrec.streams.settings import StreamSettings
from promptrec.streams.topics import TopicNames, ensure_topics

SUBCOMMANDS = ("broker", "worker", "demo", "produce", "tail", "topics", "schema")


def _run(*args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptrec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )


def _conn(settings: StreamSettings) -> list[str]:
    return ["--broker", settings.broker, "--topic-prefix", settings.topic_prefix]


def _read_all(settings: StreamSettings, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    consumer = make_consumer(settings, topic)
    records: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 15
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records += [(r.key, r.value) for r in batch]
        for batch in consumer.poll(timeout_ms=300).values():  # nothing unexpected after that
            records += [(r.key, r.value) for r in batch]
    finally:
        consumer.close()
    return records


# -- no broker needed ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert f"usage: promptrec {command}" in capsys.readouterr().out


def test_module_entry_point_help() -> None:
    result = _run("--help", timeout=30)
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nosuch"],
        ["produce"],
        ["produce", "interactions", "f.jsonl", "--rate", "-1"],
        ["tail", "interactions", "--max", "x"],
        ["worker", "--device", "tpu"],
        ["broker", "--port", "70000"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_bad_env_setting_exits_2_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROMPTREC_PARTITIONS", "abc")
    assert main(["topics", "--connect-timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert "partitions" in err and "PROMPTREC_PARTITIONS" in err
    assert "Traceback" not in err


def test_bad_flag_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--partitions", "0"]) == 2
    assert "--partitions" in capsys.readouterr().err


def test_bad_topic_prefix_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "interactions", "--topic-prefix", "bad prefix/"]) == 2
    assert "topic_prefix" in capsys.readouterr().err


def test_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.jsonl"
    assert main(["produce", "interactions", str(missing), "--broker", "127.0.0.1:1"]) == 1
    assert "none.jsonl" in capsys.readouterr().err


def test_unreachable_broker_exits_1_without_traceback(tmp_path: Path) -> None:
    data = tmp_path / "one.jsonl"
    data.write_text('{"user_id": "u1", "item_id": "i1"}\n')
    address = f"127.0.0.1:{free_port()}"
    # --connect-timeout bounds the wait: without it the producer would retry for minutes and
    # _run's subprocess timeout (a hang, not a slow run) fails the test.
    result = _run(
        "produce",
        "interactions",
        str(data),
        "--broker",
        address,
        "--connect-timeout",
        "2",
        timeout=120,
    )
    assert result.returncode == 1
    assert address in result.stderr and "cannot" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "interactions"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "user_id" in schema["properties"]
    assert main(["schema"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert {"items", "interactions", "recommendation-requests"} <= set(everything)
    assert main(["schema", "app.recommendation-requests"]) == 0  # full name, any prefix
    assert json.loads(capsys.readouterr().out) == everything["recommendation-requests"]
    assert main(["schema", "nosuch"]) == 2


# -- against the embedded broker -------------------------------------------------------------------


@pytest.mark.integration
def test_produce_skips_invalid_lines_and_exits_1(
    make_settings: Callable[..., StreamSettings],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    valid = [
        '{"user_id": "u1", "item_id": "i1", "type": "click"}',
        '{"user_id": "u2", "item_id": "i2", "type": "view"}',
    ]
    data = tmp_path / "events.jsonl"
    data.write_text(f"{valid[0]}\nnot json at all\n\n[1, 2]\n{valid[1]}\n")
    assert main(["produce", "interactions", str(data), *_conn(settings)]) == 1
    out, err = capsys.readouterr()
    assert "line 2:" in err and "line 4:" in err and "line 3" not in err
    assert "sent 2, skipped 2" in out
    topic = TopicNames.from_settings(settings).interactions
    records = _read_all(settings, topic, 2)
    assert sorted(records) == [(b"u1", valid[0].encode()), (b"u2", valid[1].encode())]


@pytest.mark.integration
def test_produce_raw_sends_bad_lines_as_is(
    make_settings: Callable[..., StreamSettings],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    data = tmp_path / "raw.jsonl"
    data.write_bytes(b'{"item_id": "a", "title": "A"}\nnot json\n\xff\xfe\n')
    assert main(["produce", "items", str(data), "--raw", *_conn(settings)]) == 0
    assert "sent 3, skipped 0" in capsys.readouterr().out
    records = _read_all(settings, TopicNames.from_settings(settings).items, 3)
    assert sorted(records, key=lambda r: r[1]) == sorted(
        [(b"a", b'{"item_id": "a", "title": "A"}'), (None, b"not json"), (None, b"\xff\xfe")],
        key=lambda r: r[1],
    )


@pytest.mark.integration
def test_produce_from_stdin_with_key_field_and_rate(
    make_settings: Callable[..., StreamSettings],
) -> None:
    settings = make_settings()
    lines = [json.dumps({"user_id": f"u{i}", "shard": i % 2}) for i in range(5)]
    started = time.monotonic()
    result = _run(
        "produce",
        "custom.topic",
        "-",
        "--key-field",
        "shard",
        "--rate",
        "20",
        *_conn(settings),
        input="\n".join(lines) + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "sent 5, skipped 0" in result.stdout
    records = _read_all(settings, "custom.topic", 5)
    assert sorted(records) == sorted((str(i % 2).encode(), lines[i].encode()) for i in range(5))
    assert time.monotonic() - started >= 0.2  # 5 events at 20/s take at least 4 intervals


@pytest.mark.integration
def test_tail_prints_values_keys_and_binary(
    make_settings: Callable[..., StreamSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    ensure_topics(settings, timeout=10)
    topic = TopicNames.from_settings(settings).feedback
    producer = make_producer(settings)
    producer.send(topic, key=b"u1", value=b'{"label": 1}', partition=0)
    producer.send(topic, key=b"u1", value=b"\x00\xff", partition=0)
    producer.flush(timeout=10)
    producer.close()
    argv = ["tail", "feedback", "--from-beginning", "--timeout", "5", *_conn(settings)]
    assert main([*argv, "--max", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ['{"label": 1}', "base64:AP8="]
    assert main([*argv, "--max", "1", "--keys"]) == 0
    assert capsys.readouterr().out.splitlines() == ['u1\t{"label": 1}']


@pytest.mark.integration
def test_tail_stops_when_idle_and_rejects_missing_topic(
    make_settings: Callable[..., StreamSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    ensure_topics(settings, timeout=10)
    started = time.monotonic()
    assert main(["tail", "recommendations", "--timeout", "1", *_conn(settings)]) == 0
    assert time.monotonic() - started >= 1.0  # it waited out --timeout, then returned
    assert capsys.readouterr().out == ""
    assert main(["tail", "no.such.topic", "--timeout", "1", *_conn(settings)]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.integration
def test_tail_ctrl_c_exits_0(make_settings: Callable[..., StreamSettings]) -> None:
    settings = make_settings()
    ensure_topics(settings, timeout=10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptrec", "tail", "interactions", *_conn(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite run in the background inherits SIGINT ignored; Ctrl-C needs the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        # Keep sending until tail shows a record: then it is surely inside its poll loop.
        producer = make_producer(settings)
        topic = TopicNames.from_settings(settings).interactions
        seen = False
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            producer.send(topic, value=b'{"ping": 1}')
            producer.flush(timeout=5)
            with contextlib.suppress(queue.Empty):
                seen = "ping" in lines.get(timeout=0.3)
        producer.close()
        assert seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_topics_lists_the_set(
    make_settings: Callable[..., StreamSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    argv = ["topics", "--connect-timeout", "10", *_conn(settings)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    names = TopicNames.from_settings(settings)
    assert [line.split()[0] for line in lines] == names.all()
    assert all("partitions=4" in line and "(created)" in line for line in lines)
    assert "cleanup=compact" in lines[0]  # items
    assert main(argv) == 0  # second run: nothing created
    assert "(created)" not in capsys.readouterr().out


@pytest.mark.integration
def test_broker_subcommand_runs_until_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptrec", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"broker ready on kafka://127.0.0.1:{port}"
        settings = StreamSettings(broker=f"127.0.0.1:{port}", topic_prefix="b.")
        assert len(ensure_topics(settings, timeout=10)) == 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        # The broker child went with it: the port is free again.
        with EmbeddedBroker(port=port):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_set_overrides_any_setting_and_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptrec.cli.main import build_parser, worker_settings

    monkeypatch.setenv("PROMPTREC_BATCH_SIZE", "7")
    monkeypatch.setenv("PROMPTREC_ENCODER_BATCH_SIZE", "9")
    argv = ["worker", "--set", "PROMPTREC_BATCH_SIZE=128", "--set", "encoder_batch_size=32"]
    argv += ["--set", "PROMPTREC_INDEX_KIND=hnsw", "--set", "history_len=5"]
    stream, encoder, index = worker_settings(build_parser().parse_args(argv))
    assert (stream.batch_size, stream.history_len) == (128, 5)
    assert encoder.batch_size == 32
    assert index.kind == "hnsw"
    # Without --set the environment holds.
    stream, encoder, _ = worker_settings(build_parser().parse_args(["worker"]))
    assert (stream.batch_size, encoder.batch_size) == (7, 9)
    # A named flag wins over --set of the same setting.
    argv = ["worker", "--set", "PROMPTREC_INDEX_KIND=hnsw", "--index-kind", "flat"]
    assert worker_settings(build_parser().parse_args(argv))[2].kind == "flat"


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("PROMPTREC_NO_SUCH=1", "no such setting"),
        ("batch_size", "NAME=VALUE"),
        ("=3", "NAME=VALUE"),
        ("PROMPTREC_BATCH_SIZE=lots", "PROMPTREC_BATCH_SIZE"),
    ],
)
def test_bad_set_exits_2(pair: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--set", pair]) == 2
    assert message in capsys.readouterr().err
