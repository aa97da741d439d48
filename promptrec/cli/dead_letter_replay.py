"""``promptrec dead-letter replay``: re-send dead-lettered records to their original topic."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter
from typing import Any

from promptrec.cli.dead_letter_common import (
    example_of,
    make_reader,
    parse_record,
    report_incomplete,
    setup,
    spans,
    table,
)
from promptrec.events.dead_letter import BadDeadLetter, original_bytes, skip_reason
from promptrec.events.dead_letter_stats import UNREADABLE, Group, Tally
from promptrec.events.schemas import DeadLetter

__all__ = ["cmd_replay"]

_MAX_LISTED_SKIPS = 20  # records not sent, printed one per line
_MAX_KEPT_SKIPS = 1000  # ... and kept for --json (the counts cover all of them)
_DATA_ERROR = "data error"


def _why(group: Group) -> str:
    why = group.why
    return f"{why}: send with --reason {group.reason}" if why == _DATA_ERROR else why


def _send(producer: Any, reader: Any, record: DeadLetter, key: bytes | None, value: Any) -> Any:
    # The original partition keeps the record next to its key's other events (the worker that
    # owns the user sees it), whatever partitioner the original producer used.
    count = reader.partition_count(record.original_topic)
    partition = record.partition if 0 <= record.partition < count else None
    return producer.send(record.original_topic, key=key, value=value, partition=partition)


def cmd_replay(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from promptrec.streams.clients import make_producer

    settings, names, selection = setup(args)
    reader = make_reader(args, settings, names, selection)
    tally = Tally(max_examples=args.examples)
    skipped: list[dict[str, Any]] = []  # not sent for a reason other than the data-error policy

    def note(example: dict[str, Any], why: str) -> None:
        if len(skipped) < _MAX_KEPT_SKIPS:
            skipped.append({**example, "why": why})

    sends: list[tuple[Group, Any, dict[str, Any]]] = []
    producer = None
    if not args.dry_run:
        ms = max(1000, int(args.connect_timeout * 1000))
        producer = make_producer(
            settings,
            bootstrap_timeout_ms=ms,
            max_block_ms=ms,
            max_request_size=16 << 20,
            allow_auto_create_topics=False,
        )
    topics: set[str] | None = None
    try:
        for rec in reader:
            record, error, wanted = parse_record(rec, selection)
            if not wanted:
                continue
            example = example_of(rec, record, error)
            if record is None:
                tally.add(UNREADABLE, "-", rec.timestamp, example, "unreadable")
                note(example, f"unreadable: {error}")
                continue
            why = skip_reason(record, selection.reasons)
            key = value = None
            if why is None:
                try:
                    key, value = original_bytes(record)
                except BadDeadLetter as exc:
                    why = f"unreadable: {exc}"
            if why is None:
                topics = reader.topics() if topics is None else topics
                if record.original_topic == names.dead_letter:
                    why = "no such topic: the original topic is the dead-letter topic itself"
                elif record.original_topic not in topics:
                    why = f"no such topic: {record.original_topic} does not exist"
            args_ = (record.reason, record.original_topic, record.ts, example)
            if why is not None:
                tally.add(*args_, why.split(":")[0], record.detail)
                if not why.startswith(_DATA_ERROR):  # policy skips: counted, not listed
                    note({**example, "reason": str(record.reason)}, why)
                continue
            group = tally.add(*args_, "sent", record.detail)
            if producer is not None:
                try:
                    sends.append((group, _send(producer, reader, record, key, value), example))
                except KafkaError as exc:
                    group.outcomes["sent"] -= 1
                    group.outcomes["failed"] += 1
                    note(example, f"failed: {exc}")
        if producer is not None:
            # What was not acknowledged in time is counted as failed below.
            with contextlib.suppress(KafkaError):
                producer.flush(timeout=args.connect_timeout)
    finally:
        if producer is not None:
            producer.close(timeout=5)
    for group, future, example in sends:
        if not future.is_done or future.failed():
            group.outcomes["sent"] -= 1
            group.outcomes["failed"] += 1
            cause = future.exception if future.is_done else "not acknowledged in time"
            note(example, f"failed: {cause}")
    _report(args, names, reader, tally, skipped)
    failed = sum(g.outcomes["failed"] for g in tally.groups.values())
    if not reader.complete:
        report_incomplete("dead-letter replay", reader)
    return 1 if failed or not reader.complete else 0


def _report(
    args: argparse.Namespace, names: Any, reader: Any, tally: Tally, skipped: list[dict[str, Any]]
) -> None:
    groups = tally.sorted()
    sent = sum(g.outcomes["sent"] for g in groups)
    failed = sum(g.outcomes["failed"] for g in groups)
    if args.json:
        by_reason: dict[str, Counter[str]] = {}
        for g in groups:
            by_reason.setdefault(g.reason, Counter()).update(g.outcomes)
        doc = {
            "topic": names.dead_letter,
            "dry_run": args.dry_run,
            "complete": reader.complete,
            "partitions": {str(p): vars(s) for p, s in sorted(reader.spans.items())},
            "selected": tally.total,
            "sent": 0 if args.dry_run else sent,
            "would_send": sent if args.dry_run else 0,
            "skipped": tally.total - sent - failed,
            "failed": failed,
            "by_reason": {r: dict(c) for r, c in sorted(by_reason.items())},
            "groups": [g.to_json(tally.total) for g in groups],
            "skipped_records": skipped,
        }
        print(json.dumps(doc, indent=2))
        return
    verb = "would send" if args.dry_run else "sent"
    print(f"{spans(reader)}; {tally.total} selected")
    if groups:
        rows = [
            [g.reason, g.topic, g.count, g.outcomes["sent"], g.skipped, _why(g)] for g in groups
        ]
        headers = ["reason", "original topic", "records", verb, "not sent", "why not"]
        print(table(headers, rows, {2, 3, 4}))
    # Data errors are skipped by policy and summed up in the table; the rest needs a look.
    for item in skipped[:_MAX_LISTED_SKIPS]:
        print(f"  not sent {item['partition']}:{item['offset']}: {item['why']}")
    if len(skipped) > _MAX_LISTED_SKIPS:
        print(f"  ... and {len(skipped) - _MAX_LISTED_SKIPS} more (see --json)")
    dry = " (dry run: nothing was sent)" if args.dry_run else ""
    print(f"{verb} {sent}, not sent {tally.total - sent}{dry}")
