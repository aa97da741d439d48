"""Shared parts of the ``promptrec dead-letter`` commands: selection, parsing, tables."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from promptrec.events.dead_letter import BadDeadLetter, Selection, parse_dead_letter
from promptrec.events.dead_letter_stats import format_ts, preview
from promptrec.events.exceptions import ReasonCode
from promptrec.events.schemas import DeadLetter

__all__ = [
    "DeadLetterUsage",
    "example_of",
    "make_reader",
    "parse_record",
    "report_incomplete",
    "setup",
    "spans",
    "table",
]


class DeadLetterUsage(Exception):
    """A bad argument found after parsing (exit code 2)."""


def setup(args: argparse.Namespace) -> tuple[Any, Any, Selection]:
    """Settings, topic names and the selection of the command's flags."""
    from promptrec.streams.exceptions import TopicError
    from promptrec.streams.settings import StreamSettings
    from promptrec.streams.topics import TopicNames

    given = {"broker": args.broker, "topic_prefix": args.topic_prefix}
    settings = StreamSettings(**{k: v for k, v in given.items() if v is not None})
    names = TopicNames.from_settings(settings)
    try:
        topics = frozenset(names.resolve(t) for t in args.topic or ())
    except TopicError as exc:
        raise DeadLetterUsage(f"--topic: {exc}") from None
    if args.since is not None and args.until is not None and args.since > args.until:
        raise DeadLetterUsage(
            f"--since {format_ts(args.since)} is after --until {format_ts(args.until)}"
        )
    starts, ends = dict(args.from_offset or ()), dict(args.to_offset or ())
    for part in starts.keys() & ends.keys():
        if starts[part] > ends[part]:
            where = "" if part is None else f" in partition {part}"
            raise DeadLetterUsage(
                f"--from-offset {starts[part]} is after --to-offset {ends[part]}{where}"
            )
    selection = Selection(
        reasons=frozenset(ReasonCode(r) for r in args.reason or ()),
        topics=topics,
        since_ms=args.since,
        until_ms=args.until,
        from_offsets=tuple(args.from_offset or ()),
        to_offsets=tuple(args.to_offset or ()),
    )
    return settings, names, selection


def make_reader(args: argparse.Namespace, settings: Any, names: Any, selection: Selection) -> Any:
    from promptrec.cli.dead_letter_reader import DeadLetterReader

    return DeadLetterReader(
        settings, names.dead_letter, selection, args.idle_timeout, args.connect_timeout
    )


def parse_record(rec: Any, selection: Selection) -> tuple[DeadLetter | None, str | None, bool]:
    """``(record, error, selected)`` of one consumed record."""
    try:
        record = parse_dead_letter(rec.value)
    except BadDeadLetter as exc:
        # Unreadable records have no reason or topic: only a selection without those filters,
        # by the Kafka timestamp, shows them.
        wanted = not selection.reasons and not selection.topics and selection.in_time(rec.timestamp)
        return None, str(exc), wanted
    return record, None, selection.matches(record)


def example_of(rec: Any, record: DeadLetter | None, error: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"partition": rec.partition, "offset": rec.offset}
    if record is None:
        out["error"] = error
        return out
    out.update(
        original_partition=record.partition,
        original_offset=record.offset,
        detail=record.detail,
        value=preview(record),
        truncated=record.truncated,
    )
    return out


def table(headers: list[str], rows: list[list[Any]], numeric: set[int]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def spans(reader: Any) -> str:
    """``read N of <topic> (partition 0: offsets 0..41, ...)``: what a reader went through."""
    parts = []
    for part, span in sorted(reader.spans.items()):
        if span.end is None or span.end > span.start:
            end = "?" if span.end is None else span.end - 1
            parts.append(f"partition {part}: offsets {span.start}..{end}")
        else:
            parts.append(f"partition {part}: none")
    read = sum(s.read for s in reader.spans.values())
    return f"read {read} of {reader.topic} ({', '.join(parts) or 'no partitions'})"


def report_incomplete(command: str, reader: Any) -> None:
    print(
        f"promptrec {command}: error: no data for {reader.idle_timeout:g} s before the end of "
        f"the topic ({spans(reader)}); the counts cover only what was read",
        file=sys.stderr,
    )
