"""``promptrec eval ab``: replay a dataset through a worker serving experiment arms, compare them.

The replay is ``eval stream``'s (:func:`~promptrec.evaluation.stream.run_replay` through
:func:`~promptrec.evaluation.stream.replay_worker`: embedded broker, real worker, the catalog
first), with the worker started on ``--experiments FILE``. Users are split between the arms by
the worker's own assignment; every recommendation names its arm.

Simulated feedback from the held-out future: when a recommendation for user ``u`` arrives, each
of its items that ``u`` interacts with *later in the log* (after the event or request it answers)
is a click, published as ``feedback`` (label 1) with the ``recommendation_id``, so the click is
learned by the head of the arm that made the recommendation; the best-ranked item ``u`` never
interacts with later is published as a non-click (label 0). A recommendation is *clicked* when at
least one of its items is. Per arm: recommendations, clicked recommendations, CTR (clicked /
eligible recommendations, those whose user has a later event) with a 95% Wilson interval, and
HR@10 (the user's next event is in the recommendation; the replay's prequential hit). Every
other arm is compared with the first one: the CTR difference with Newcombe's 95% interval
(hybrid score method built from the two Wilson intervals), and the HR@10 difference likewise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ArmTally", "FutureClicks", "newcombe", "run_ab_eval", "wilson"]

Z95 = 1.959963984540054
K = 10


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(s1: int, n1: int, s2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``(p1 - p2, low, high)``: difference of two proportions, Newcombe's hybrid interval."""
    p1 = s1 / n1 if n1 else 0.0
    p2 = s2 / n2 if n2 else 0.0
    l1, u1 = wilson(s1, n1, z)
    l2, u2 = wilson(s2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


@dataclass
class ArmTally:
    """Counts of one arm."""

    recommendations: int = 0
    eligible: int = 0  # recommendations whose user has a later event (can be clicked)
    clicked: int = 0  # eligible recommendations with at least one click
    clicks: int = 0  # clicked items
    hits: int = 0  # eligible recommendations that hold the user's next item

    def to_dict(self) -> dict[str, Any]:
        """The arm's JSON entry."""
        low, high = wilson(self.clicked, self.eligible)
        hr_low, hr_high = wilson(self.hits, self.eligible)
        return {
            "recommendations": self.recommendations,
            "eligible_recommendations": self.eligible,
            "clicked_recommendations": self.clicked,
            "clicks": self.clicks,
            "CTR": self.clicked / self.eligible if self.eligible else 0.0,
            "CTR_95": [low, high],
            "HR@10": self.hits / self.eligible if self.eligible else 0.0,
            "HR@10_95": [hr_low, hr_high],
        }


class FutureClicks:
    """Turns recommendations into simulated feedback from the users' future in the log.

    Args:
        events: The replayed interactions, time-ordered (the replay's ``events``).
        send: Publishes one feedback record (``(user_id, value)``).
    """

    def __init__(self, events: Sequence[Any], send: Any) -> None:
        self.events = events
        self.send = send
        self.by_user: dict[str, list[int]] = {}
        for idx, e in enumerate(events):
            self.by_user.setdefault(e.user_id, []).append(idx)
        self.arms: dict[str, ArmTally] = {}
        self._answered: set[str] = set()
        self._n = 0

    def future(self, user_id: str, source_event_id: str) -> list[int]:
        """The user's event indices after the answered one (``e-i``: after i; ``r-i``: from i)."""
        kind, _, num = source_event_id.partition("-")
        if not num.isdigit():
            return []
        idx = int(num)
        return [i for i in self.by_user.get(user_id, []) if (i > idx if kind == "e" else i >= idx)]

    def __call__(self, rec: Any) -> None:
        """One recommendation from the replay: tally it and publish its feedback."""
        if rec.recommendation_id in self._answered or not rec.user_id:
            return
        self._answered.add(rec.recommendation_id)
        tally = self.arms.setdefault(rec.arm or "default", ArmTally())
        tally.recommendations += 1
        ranked = [s.item_id for s in rec.items[:K]]
        later = self.future(rec.user_id, rec.source_event_id)
        if not later:
            return  # the user's last answer: nothing left to click, no feedback
        tally.eligible += 1
        tally.hits += self.events[later[0]].item_id in ranked
        future_items = {self.events[i].item_id for i in later}
        clicked = [item for item in ranked if item in future_items]
        tally.clicks += len(clicked)
        tally.clicked += bool(clicked)
        missed = next((item for item in ranked if item not in future_items), None)
        labelled = [(item, 1) for item in clicked] + ([(missed, 0)] if missed else [])
        for item, label in labelled:
            self._n += 1
            self.send(
                rec.user_id,
                {
                    "event_id": f"fb-{self._n}",
                    "user_id": rec.user_id,
                    "item_id": item,
                    "recommendation_id": rec.recommendation_id,
                    "label": label,
                    "ts": rec.source_ts,
                },
            )

    def report(self, arm_order: Sequence[str]) -> dict[str, Any]:
        """Per-arm results and every arm's differences with the first arm."""
        names = [a for a in arm_order if a in self.arms] + sorted(set(self.arms) - set(arm_order))
        arms = {name: self.arms[name].to_dict() for name in names}
        diffs = []
        if names:
            base = self.arms[names[0]]
            for name in names[1:]:
                other = self.arms[name]
                ctr = newcombe(other.clicked, other.eligible, base.clicked, base.eligible)
                hr = newcombe(other.hits, other.eligible, base.hits, base.eligible)
                diffs.append(
                    {
                        "arm": name,
                        "versus": names[0],
                        "CTR_diff": ctr[0],
                        "CTR_diff_95": [ctr[1], ctr[2]],
                        "HR@10_diff": hr[0],
                        "HR@10_diff_95": [hr[1], hr[2]],
                    }
                )
        return {"arms": arms, "differences": diffs}


def format_table(report: dict[str, Any]) -> str:
    """The per-arm table and the differences, as text."""
    lines = [
        f"{'arm':<16} {'recs':>7} {'eligible':>8} {'clicked':>8} {'CTR':>7} {'CTR 95%':>17} "
        f"{'HR@10':>7} {'HR@10 95%':>17}"
    ]
    for name, a in report["arms"].items():
        lines.append(
            f"{name:<16} {a['recommendations']:>7} {a['eligible_recommendations']:>8} "
            f"{a['clicked_recommendations']:>8} "
            f"{a['CTR']:>7.4f} [{a['CTR_95'][0]:.4f}, {a['CTR_95'][1]:.4f}] "
            f"{a['HR@10']:>7.4f} [{a['HR@10_95'][0]:.4f}, {a['HR@10_95'][1]:.4f}]"
        )
    for d in report["differences"]:
        lines.append(
            f"{d['arm']} - {d['versus']}: CTR {d['CTR_diff']:+.4f} "
            f"[{d['CTR_diff_95'][0]:+.4f}, {d['CTR_diff_95'][1]:+.4f}], HR@10 "
            f"{d['HR@10_diff']:+.4f} [{d['HR@10_diff_95'][0]:+.4f}, {d['HR@10_diff_95'][1]:+.4f}]"
        )
    return "\n".join(lines)


def run_ab_eval(args: argparse.Namespace) -> int:
    """The ``promptrec eval ab`` command body."""
    from promptrec.encoder import PromptTemplates
    from promptrec.encoder.settings import EncoderSettings
    from promptrec.evaluation.datasets import load_dataset
    from promptrec.evaluation.stream import _j, replay_worker, run_replay, select_events
    from promptrec.serving.experiments import ExperimentError, Experiments
    from promptrec.streams.clients import make_producer
    from promptrec.streams.topics import TopicNames

    encoder = EncoderSettings()
    try:
        experiments = Experiments.load(
            args.experiments,
            PromptTemplates.load(encoder.prompts_file),
            encoder.item_prompt,
            encoder.user_prompt,
            encoder.checkpoint,
        )
    except ExperimentError as exc:
        print(f"promptrec eval ab: error: {exc}", file=sys.stderr)
        return 2
    if len(experiments.arms) < 2:
        print(
            "promptrec eval ab: error: the experiments file needs two or more arms", file=sys.stderr
        )
        return 2
    dataset = load_dataset(args.data, args.format)
    events = select_events(dataset, args.users, args.limit)
    if not events:
        print("promptrec eval ab: error: no events selected", file=sys.stderr)
        return 2
    users = {e.user_id for e in events}
    extra = {"PROMPTREC_EXPERIMENTS_FILE": str(Path(args.experiments).resolve())}
    try:
        with replay_worker(
            dataset, users, model_dir=args.model_dir, device=args.device, extra_env=extra
        ) as settings:
            names = TopicNames.from_settings(settings)
            producer = make_producer(settings, linger_ms=0)

            def send(user_id: str, value: dict[str, Any]) -> None:
                producer.send(names.feedback, key=user_id.encode(), value=_j(value))

            clicks = FutureClicks(events, send)
            try:
                stream = run_replay(
                    settings, dataset, events, 1, args.timeout, progress=not args.quiet,
                    on_recommendation=clicks,
                )  # fmt: skip
            finally:
                producer.close()
    except RuntimeError as exc:
        print(f"promptrec eval ab: error: {exc}", file=sys.stderr)
        return 1
    report = clicks.report([a.name for a in experiments.arms])
    results = {
        "dataset": dataset.name,
        "experiment": experiments.name,
        "arms_config": [
            {
                "name": a.name,
                "weight": a.weight,
                "item_prompt": a.item_prompt,
                "user_prompt": a.user_prompt,
                "checkpoint": str(a.checkpoint) if a.checkpoint else None,
            }
            for a in experiments.arms
        ],
        "protocol": (
            "eval stream replay through the broker and one worker serving the arms; a "
            "recommended item the user interacts with later in the log is a click (feedback "
            "label 1 with the recommendation_id; the best-ranked never-clicked item label 0); "
            "CTR = clicked / eligible recommendations (the user has a later event), Wilson 95%; "
            "HR@10 = the next event's item is in the recommendation (same denominator); "
            "differences versus the first arm, Newcombe 95%"
        ),
        "events": stream["events"],
        "seconds": stream["seconds"],
        **report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"wrote {args.out}")
    return 0
