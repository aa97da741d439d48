"""``promptrec dead-letter list`` and ``promptrec dead-letter replay``.

Both read the dead-letter topic from its beginning (or ``--from-offset``) up to where it ended
when the command started, then stop. ``list`` counts records per reason and original topic;
``replay`` re-publishes the original bytes with their original key to the original topic and
partition. Which reasons are re-sent by default, and why, is in :mod:`promptrec.events.dead_letter`.
Exit codes: 0 success, 1 runtime failure (broker unreachable, a send failed, the read stopped
before the end), 2 usage error. Skipped records are reported, not failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from promptrec.cli.argtypes import non_negative_float, non_negative_int, positive_float
from promptrec.events.exceptions import ReasonCode

if TYPE_CHECKING:
    from promptrec.events.dead_letter_stats import Group

__all__ = ["register"]


def _offset_arg(text: str) -> tuple[int | None, int]:
    from promptrec.events.dead_letter import parse_offset

    try:
        return parse_offset(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time_arg(text: str) -> int:
    from promptrec.events.dead_letter import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _times(group: Group) -> list[str]:
    from promptrec.events.dead_letter_stats import format_ts

    return [format_ts(group.first_ts), format_ts(group.last_ts)]


def _cmd_list(args: argparse.Namespace) -> int:
    from promptrec.cli.dead_letter_common import (
        example_of,
        make_reader,
        parse_record,
        report_incomplete,
        setup,
        spans,
        table,
    )
    from promptrec.events.dead_letter_stats import UNREADABLE, Tally

    settings, names, selection = setup(args)
    reader = make_reader(args, settings, names, selection)
    tally = Tally(max_examples=args.examples)
    for rec in reader:
        record, error, wanted = parse_record(rec, selection)
        if not wanted:
            continue
        if record is None:
            tally.add(UNREADABLE, "-", rec.timestamp, example_of(rec, None, error))
        else:
            example = example_of(rec, record, None)
            tally.add(record.reason, record.original_topic, record.ts, example, None, record.detail)
    groups, total = tally.sorted(), tally.total
    if args.json:
        doc = {
            "topic": names.dead_letter,
            "complete": reader.complete,
            "partitions": {str(p): vars(s) for p, s in sorted(reader.spans.items())},
            "total": total,
            "groups": [g.to_json(total) for g in groups],
            "hint": tally.hint(),
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"{spans(reader)}; {total} selected")
        rows = [
            [g.count, f"{100.0 * g.count / total:.1f}", g.reason, g.topic, *_times(g)]
            for g in groups
        ]
        if rows:
            headers = ["count", "%", "reason", "original topic", "first", "last"]
            print(table(headers, rows, {0, 1}))
        for g in groups:
            if g.examples:
                print(f"\n{g.reason} on {g.topic}:" if g.topic != "-" else f"\n{g.reason}:")
            for ex in g.examples:
                what = ex.get("error") or f"{ex['detail']}\n      value: {ex['value']}"
                print(f"  {ex['partition']}:{ex['offset']}  {what}")
        if (hint := tally.hint()) is not None:
            print(f"\nhint: {hint}")
    if not reader.complete:
        report_incomplete("dead-letter list", reader)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    from promptrec.cli.dead_letter_replay import cmd_replay  # Kafka producer: only when used

    return cmd_replay(args)


def _run(command: str, body: Any, args: argparse.Namespace) -> int:
    from promptrec.cli.dead_letter_common import DeadLetterUsage

    try:
        return int(body(args))
    except DeadLetterUsage as exc:
        print(f"promptrec {command}: error: {exc}", file=sys.stderr)
        return 2


def _add_selection(p: argparse.ArgumentParser) -> None:
    reasons = [r.value for r in ReasonCode]
    p.add_argument(
        "--reason",
        action="append",
        choices=reasons,
        metavar="REASON",
        help=f"only this reason (repeatable): {', '.join(reasons)}",
    )
    p.add_argument(
        "--topic", action="append", help="only this original topic, logical or full (repeatable)"
    )
    for flag, text in (("--from-offset", "first"), ("--to-offset", "last (inclusive)")):
        p.add_argument(
            flag,
            action="append",
            type=_offset_arg,
            metavar="[P:]N",
            help=f"{text} dead-letter offset read, in every partition or in partition P "
            "(repeatable)",
        )
    for flag, text in (("--since", "at or after"), ("--until", "at or before")):
        p.add_argument(
            flag,
            type=_time_arg,
            metavar="TIME",
            help=f"only records dead-lettered {text} TIME (epoch ms or ISO 8601, UTC default)",
        )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--idle-timeout",
        dest="idle_timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="give up when no data comes for S seconds before the end (default 10)",
    )
    p.add_argument("--broker", help="bootstrap servers (overrides PROMPTREC_BROKER)")
    p.add_argument("--topic-prefix", dest="topic_prefix", help="topic name prefix")
    p.add_argument(
        "--connect-timeout",
        dest="connect_timeout",
        type=non_negative_float,
        default=30.0,
        metavar="S",
        help="give up when the broker does not answer within S seconds (default 30)",
    )


def register(sub: Any) -> None:
    """Add ``dead-letter {list,replay}`` to the ``promptrec`` subparsers."""
    text = "Inspect the dead-letter topic and re-send what failed for a transient reason."
    dl = sub.add_parser("dead-letter", help=text, description=text)
    dlsub = dl.add_subparsers(dest="dead_letter_command", metavar="ACTION", required=True)

    text = "Count dead-letter records per reason and original topic, with examples."
    p = dlsub.add_parser("list", help=text, description=text)
    _add_selection(p)
    p.add_argument(
        "--examples", type=non_negative_int, default=3, metavar="N", help="per group (default 3)"
    )
    p.set_defaults(func=lambda a: _run("dead-letter list", _cmd_list, a))

    text = (
        "Re-send dead-lettered records (original bytes, key, topic, partition). By default only "
        "processing_error, unknown_item and unknown_user; data errors only when named with "
        "--reason; truncated records never."
    )
    p = dlsub.add_parser("replay", help=text, description=text)
    _add_selection(p)
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="count, send nothing")
    p.add_argument(
        "--examples", type=non_negative_int, default=3, metavar="N", help="per group in --json"
    )
    p.set_defaults(func=lambda a: _run("dead-letter replay", _replay, a))
