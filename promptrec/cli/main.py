"""The ``promptrec`` command line: broker, worker, demo, produce, tail, topics, schema.

Exit codes: 0 success, 1 runtime failure (broker unreachable, unreadable file, skipped records),
2 usage or settings error. Expected failures print one clear line on stderr, never a traceback.
Heavy modules (worker, demo, schemas, Faust, torch) are imported inside their subcommand so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from promptrec.cli.argtypes import non_negative_float, non_negative_int, port
from promptrec.cli.settings_doc import SETTINGS_MODULES, settings_class

__all__ = ["build_parser", "main", "worker_settings"]

PROG = "promptrec"
# Record field used as the Kafka key, by logical topic (keys drive partitioning).
DEFAULT_KEY_FIELDS: dict[str, str] = {
    "items": "item_id",
    "users": "user_id",
    "interactions": "user_id",
    "feedback": "user_id",
    "recommendation-requests": "user_id",
}
_PROGRESS_MIN_LINES = 1000
# Light modules (no torch/Faust at import) that add subcommands: train/eval, bench, dead-letter,
# settings.
_COMMAND_MODULES = (
    "promptrec.cli.quality",
    "promptrec.cli.bench",
    "promptrec.cli.dead_letter",
    "promptrec.cli.settings_doc",
)


class UsageError(Exception):
    """A bad argument value found after parsing (exit code 2)."""


# -- settings -------------------------------------------------------------------------------------


def _overrides(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    """Settings overrides from the CLI options that were given (``{dest: field}``)."""
    given = {field: getattr(args, dest, None) for dest, field in mapping.items()}
    return {field: value for field, value in given.items() if value is not None}


_STREAM_OPTIONS = {
    "broker": "broker",
    "topic_prefix": "topic_prefix",
    "app_id": "app_id",
    "partitions": "partitions",
    "metrics_port": "metrics_port",
    "metrics_host": "metrics_host",
    "state_dir": "state_dir",
    "log_level": "log_level",
}


def _stream_settings(args: argparse.Namespace) -> Any:
    from promptrec.streams.settings import StreamSettings

    # Env first (pydantic-settings reads it), then the flags that were given win.
    return StreamSettings(**_overrides(args, _STREAM_OPTIONS))


# The settings objects a worker builds (StreamSettings holds ServingSettings' fields too); the
# registry of every settings class is promptrec.cli.settings_doc's.
_WORKER_SETTINGS = ("StreamSettings", "EncoderSettings", "IndexSettings")


def _format_validation_error(exc: ValidationError, args: argparse.Namespace) -> list[str]:
    """One line per invalid field, naming its env variable (and flag, if this command has one)."""
    prefix = ""
    if exc.title in SETTINGS_MODULES:
        prefix = _env_prefix(exc.title)
    flags = {dest: "--" + dest.replace("_", "-") for dest in vars(args)}
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "<settings>"
        sources = [f"{prefix}{field.upper()}"] if prefix else []
        # IndexSettings.kind is --index-kind on the command line.
        index_flag = flags.get(f"index_{field}") if exc.title == "IndexSettings" else None
        flag = flags.get(field) or index_flag
        if flag:
            sources.append(flag)
        where = f" ({' or '.join(sources)})" if sources else ""
        shown = "" if "password" in field else f" (got {error.get('input')!r})"
        what = "setting" if prefix else f"{exc.title} field"
        lines.append(f"invalid {what} {field}{where}: {error['msg']}{shown}")
    return lines


# -- subcommands ----------------------------------------------------------------------------------


def _cmd_broker(args: argparse.Namespace) -> int:
    from promptrec.broker.embedded import EmbeddedBroker

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(port=args.port, host=args.host, log_path=args.log_file)
    try:
        broker.start(timeout=args.start_timeout)
        print(f"broker ready on {broker.url}", flush=True)
        while not stop.wait(0.5):
            if not broker.running:
                _err("broker", f"broker process exited unexpectedly:\n{broker.log_tail()}")
                return 1
        return 0
    finally:
        broker.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _key_bytes(record: dict[str, Any], key_field: str | None) -> bytes | None:
    if not key_field or record.get(key_field) is None:
        return None
    value = record[key_field]
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.encode("utf-8")


def _parse_line(line: bytes) -> dict[str, Any]:
    """The JSON object on ``line``; ValueError with a short reason otherwise."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (got {type(obj).__name__})")
    return obj


def _count_lines(path: str) -> int | None:
    """Line count of the input file (None for stdin); also fails early on a bad path."""
    if path == "-":
        return None
    file = Path(path)
    if not file.is_file():
        raise OSError(f"not a readable file: {path}")
    with file.open("rb") as f:
        return sum(1 for _ in f)


def _open_input(path: str) -> IO[bytes]:
    return sys.stdin.buffer if path == "-" else Path(path).open("rb")


def _cmd_produce(args: argparse.Namespace) -> int:
    from kafka.errors import MessageSizeTooLargeError
    from tqdm import tqdm

    from promptrec.streams.clients import make_producer
    from promptrec.streams.topics import TopicNames, ensure_topics

    settings = _stream_settings(args)
    names = TopicNames.from_settings(settings)
    topic = names.resolve(args.topic)
    logical = names.logical(topic)
    key_field = (
        args.key_field if args.key_field is not None else DEFAULT_KEY_FIELDS.get(logical or "")
    )
    total = _count_lines(args.file)
    timeout_ms = int(args.connect_timeout * 1000)
    ensure_topics(settings, timeout=args.connect_timeout)
    producer = make_producer(settings, bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
    stream = _open_input(args.file)
    sent = skipped = 0
    failures: list[str] = []

    def failed(exc: BaseException) -> None:
        failures.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    progress = tqdm(
        total=total,
        file=sys.stderr,
        unit="ev",
        disable=total is None or total <= _PROGRESS_MIN_LINES,
    )
    try:
        with stream, progress:
            for number, raw_line in enumerate(stream, start=1):
                progress.update(1)
                line = raw_line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    record = _parse_line(line)
                except ValueError as exc:
                    if not args.raw:
                        progress.clear()
                        print(f"line {number}: {exc}", file=sys.stderr)
                        skipped += 1
                        continue
                    record = {}  # raw mode: sent as-is, no key
                if args.rate > 0:  # pace against the start so sleep jitter does not accumulate
                    delay = start + sent / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                try:
                    future = producer.send(topic, value=line, key=_key_bytes(record, key_field))
                except MessageSizeTooLargeError as exc:
                    progress.clear()
                    print(f"line {number}: too large to send ({exc})", file=sys.stderr)
                    skipped += 1
                    continue
                future.add_errback(failed)
                sent += 1
        producer.flush(timeout=args.connect_timeout)
    finally:
        producer.close(timeout=5)
    if failures:
        _err("produce", f"{len(failures)} records failed to send; first: {failures[0]}")
    print(f"sent {sent - len(failures)}, skipped {skipped}", flush=True)
    return 1 if skipped or failures else 0


def _render(data: bytes | None) -> str:
    """One output line for a key or value: text as is, other bytes as ``base64:...``."""
    if data is None:
        return "null"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\n" in text or "\r" in text:
        return "base64:" + base64.b64encode(data).decode("ascii")
    return text


def _cmd_tail(args: argparse.Namespace) -> int:
    from kafka import TopicPartition

    from promptrec.streams.clients import make_consumer
    from promptrec.streams.topics import TopicNames

    settings = _stream_settings(args)
    topic = TopicNames.from_settings(settings).resolve(args.topic)
    timeout_ms = int(args.connect_timeout * 1000)
    consumer = make_consumer(settings, bootstrap_timeout_ms=timeout_ms)
    count = 0
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            _err("tail", f"topic {topic} does not exist (create it with `promptrec topics`)")
            return 1
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if args.from_beginning:
            consumer.seek_to_beginning(*assigned)
        else:
            consumer.seek_to_end(*assigned)
        last = time.monotonic()
        while args.max == 0 or count < args.max:
            if args.timeout is not None and time.monotonic() - last >= args.timeout:
                break
            batches = consumer.poll(timeout_ms=200)
            lines = []
            for records in batches.values():
                for rec in records:
                    value = _render(rec.value)
                    lines.append(f"{_render(rec.key)}\t{value}" if args.keys else value)
            if lines:
                last = time.monotonic()
                if args.max:
                    lines = lines[: args.max - count]
                count += len(lines)
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
    finally:
        consumer.close(autocommit=False)
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    from promptrec.streams.clients import make_admin
    from promptrec.streams.topics import COMPACTED, TopicNames, ensure_topics, topic_partitions

    settings = _stream_settings(args)
    timeout_ms = int(args.connect_timeout * 1000)
    admin = make_admin(settings, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        created = set(ensure_topics(settings, admin=admin, timeout=args.connect_timeout))
        names = TopicNames.from_settings(settings)
        counts = topic_partitions(admin, names.all())
    finally:
        admin.close()
    width = max(len(n) for n in names.all())
    for name in names.all():
        policy = "compact" if names.logical(name) in COMPACTED else "delete"
        note = "  (created)" if name in created else ""
        print(f"{name:<{width}}  partitions={counts.get(name, '?')}  cleanup={policy}{note}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from promptrec.events.schemas import json_schemas

    schemas = json_schemas()
    if args.topic is None:
        print(json.dumps(schemas, indent=2))
        return 0
    # A logical name, or a full name under any prefix: the longest logical suffix wins.
    matches = [name for name in schemas if args.topic.endswith(name)]
    logical = max(matches, key=len) if matches else None
    if logical is None:
        raise UsageError(f"no schema for topic {args.topic!r}; known: {', '.join(schemas)}")
    print(json.dumps(schemas[logical], indent=2))
    return 0


def _set_overrides(pairs: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--set NAME=VALUE`` pairs by settings class: ``{"StreamSettings": {field: value}}``.

    NAME is a setting's environment variable (``PROMPTREC_ENCODER_BATCH_SIZE``) or, for the
    worker's own settings, its field name (``batch_size``). Values are parsed by the settings
    objects exactly like environment values.
    """
    # Longest env prefix first: PROMPTREC_ENCODER_X is an encoder setting, not StreamSettings'.
    classes = sorted(_WORKER_SETTINGS, key=lambda name: -len(_env_prefix(name)))
    out: dict[str, dict[str, str]] = {name: {} for name in _WORKER_SETTINGS}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set wants NAME=VALUE, got {pair!r}")
        key = name.strip().upper()
        if not key.startswith("PROMPTREC_"):
            key = "PROMPTREC_" + key
        for cls_name in classes:
            prefix = _env_prefix(cls_name)
            field = key[len(prefix) :].lower()
            if key.startswith(prefix) and field in settings_class(cls_name).model_fields:
                out[cls_name][field] = value
                break
        else:
            raise UsageError(f"--set {name}: no such setting (see the README's settings tables)")
    return out


def _env_prefix(name: str) -> str:
    return str(settings_class(name).model_config.get("env_prefix", ""))


def worker_settings(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The worker's (stream, encoder, index) settings: env, then ``--set``, then named flags."""
    from promptrec.encoder.settings import EncoderSettings
    from promptrec.index.settings import IndexSettings
    from promptrec.streams.settings import StreamSettings

    sets = _set_overrides(getattr(args, "set", None) or [])
    # First: stream settings errors need no torch import.
    stream = StreamSettings(**{**sets["StreamSettings"], **_overrides(args, _STREAM_OPTIONS)})
    flags = _overrides(args, {"model_dir": "model_dir", "device": "device"})
    encoder = EncoderSettings(**{**sets["EncoderSettings"], **flags})
    index = IndexSettings(**{**sets["IndexSettings"], **_overrides(args, {"index_kind": "kind"})})
    return stream, encoder, index


def _cmd_worker(args: argparse.Namespace) -> int:
    stream, encoder, index = worker_settings(args)
    from promptrec.streams.worker import run_worker

    return int(run_worker(stream, encoder, index))


def _cmd_demo(args: argparse.Namespace) -> int:
    from promptrec.demo.runner import run_demo

    if args.state_dir is not None:
        return int(run_demo(args))
    # A throw-away state dir, removed afterwards (the worker has stopped by then).
    with tempfile.TemporaryDirectory(prefix="promptrec-demo-", ignore_cleanup_errors=True) as tmp:
        args.state_dir = Path(tmp)
        return int(run_demo(args))


# -- parser ---------------------------------------------------------------------------------------


def _add_connection(parser: argparse.ArgumentParser, timeout: bool = True) -> None:
    parser.add_argument("--broker", help="bootstrap servers (overrides PROMPTREC_BROKER)")
    parser.add_argument(
        "--topic-prefix", dest="topic_prefix", help="topic name prefix (PROMPTREC_TOPIC_PREFIX)"
    )
    if timeout:
        parser.add_argument(
            "--connect-timeout",
            type=non_negative_float,
            default=30.0,
            metavar="S",
            help="give up when the broker does not answer within S seconds (default 30)",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``promptrec`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Streaming recommender on Kafka: prompt, encode, retrieve, learn."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        return p

    p = command("broker", _cmd_broker, "Run the embedded Kafka-protocol broker in the foreground.")
    p.add_argument("--port", type=port, default=9092, help="TCP port (default 9092; 0 = free)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--log-file", dest="log_file", type=Path, help="broker log (default: temp)")
    p.add_argument("--start-timeout", dest="start_timeout", type=float, default=30.0, metavar="S")

    p = command("worker", _cmd_worker, "Run a recommender worker (joins the consumer group).")
    _add_connection(p, timeout=False)
    p.add_argument("--app-id", dest="app_id", help="Faust app id / consumer group")
    p.add_argument("--partitions", type=int, help="partitions of the keyed topics")
    p.add_argument("--metrics-port", dest="metrics_port", type=port, help="0 disables")
    p.add_argument("--metrics-host", dest="metrics_host")
    p.add_argument("--state-dir", dest="state_dir", type=Path)
    p.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warn", "error"])
    p.add_argument("--model-dir", dest="model_dir", type=Path, help="local HF model folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--index-kind", dest="index_kind", choices=["flat", "hnsw"])
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="any setting, e.g. --set PROMPTREC_BATCH_SIZE=128 (repeatable; wins over the env)",
    )

    p = command("demo", _cmd_demo, "Broker + worker + bundled data set, end to end.")
    p.add_argument("--port", type=port, default=None, help="embedded broker port (default free)")
    p.add_argument(
        "--events", type=non_negative_int, default=0, help="stop after N interactions (0 = all)"
    )
    p.add_argument("--rate", type=non_negative_float, default=20.0, help="interactions/s")
    p.add_argument("--model-dir", dest="model_dir", type=Path)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--state-dir", dest="state_dir", type=Path, help="default: a temp dir")
    p.add_argument("--metrics-port", dest="metrics_port", type=port, default=9464)
    p.add_argument("--quiet", action="store_true", help="print only the summary")

    p = command("produce", _cmd_produce, "Replay a JSONL file into a topic.")
    p.add_argument("topic", help="logical (interactions, items, ...) or full topic name")
    p.add_argument("file", help="JSONL file, '-' for stdin")
    p.add_argument("--key-field", dest="key_field", help="record field used as key ('' = none)")
    p.add_argument("--rate", type=non_negative_float, default=0.0, help="events/s (0 = max)")
    p.add_argument("--raw", action="store_true", help="send every non-empty line as-is")
    _add_connection(p)

    p = command("tail", _cmd_tail, "Print the records of a topic, one value per line.")
    p.add_argument("topic", help="logical or full topic name")
    p.add_argument("--from-beginning", dest="from_beginning", action="store_true")
    p.add_argument("--max", type=non_negative_int, default=0, help="stop after N (0 = no limit)")
    p.add_argument(
        "--timeout", type=non_negative_float, default=None, help="stop after S seconds idle"
    )
    p.add_argument("--keys", action="store_true", help="print KEY<TAB>VALUE")
    _add_connection(p)

    p = command("topics", _cmd_topics, "Create the topic set and list it.")
    _add_connection(p)

    p = command("schema", _cmd_schema, "Print the JSON schema of a topic's records (or all).")
    p.add_argument("topic", nargs="?", help="logical topic name (default: all)")

    # Command groups kept in their own modules (each exposes ``register(subparsers)``).
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def _err(command: str | None, message: str) -> None:
    print(f"{PROG}{' ' + command if command else ''}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI and returns its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command != "worker":  # the worker configures logging from its settings
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        # kafka-python logs every refused connection; the CLI reports failures itself.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from promptrec.broker.exceptions import EmbeddedBrokerError
    from promptrec.encoder.exceptions import EncoderError
    from promptrec.events.exceptions import EventError
    from promptrec.streams.exceptions import ConfigError, StreamsError

    try:
        return int(args.func(args))
    except ValidationError as exc:
        for line in _format_validation_error(exc, args):
            _err(args.command, line)
        return 2
    except (UsageError, ConfigError) as exc:
        _err(args.command, str(exc))
        return 2
    # EncoderError: e.g. a worker's corrupt checkpoint (CheckpointError) is one line, exit 1.
    except (StreamsError, EmbeddedBrokerError, EventError, EncoderError) as exc:
        _err(args.command, str(exc))
        return 1
    except BrokenPipeError:  # `promptrec tail ... | head`: not an error
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        detail = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        _err(args.command, detail)
        return 1
    except ModuleNotFoundError as exc:
        _err(args.command, f"missing module {exc.name} (is promptrec fully installed?)")
        return 1
    except KeyboardInterrupt:  # Ctrl-C is the normal way to end `tail`
        return 0 if args.command in ("tail", "broker") else 130
    except Exception as exc:
        from kafka.errors import KafkaError

        if isinstance(exc, KafkaError):
            _err(args.command, f"Kafka: {exc}")
            return 1
        raise
