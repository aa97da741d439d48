"""Stalled-partition decisions without Kafka: when a partition is stuck and what to try next.

A partition is *stalled* when the broker has records the consumer has not fetched (its fetch
position is below the high watermark of the fetch responses), the consumer keeps fetching it
(fetch responses keep arriving), and yet the position does not move for ``timeout_s``. That is
the signature of a broker answering a fetch position with nothing, such as Tansu v0.6.0 inside
the last record batch of a partition. A consumer that is merely busy does not qualify: Faust and
aiokafka stop fetching a partition whose fetched records are not consumed yet, so its fetch
responses stop arriving and the clock restarts.

The Kafka side (:mod:`promptrec.streams.watchdog`) feeds samples in and carries out the
:class:`Action` values that :class:`Recovery` returns.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "PartitionSample", "Recovery", "StallDetector", "recovery_offsets"]


@dataclass(frozen=True)
class PartitionSample:
    """What the consumer knows about one partition at one moment.

    Attributes:
        position: Next offset the consumer will fetch; None while it has no valid position.
        highwater: End offset reported by the last fetch response; None before the first one.
        fetched_at: Time of the last fetch response for the partition, on any clock (only
            compared for change); None before the first one.
    """

    position: int | None
    highwater: int | None
    fetched_at: float | None

    @property
    def lag(self) -> int:
        """Records on the broker the consumer has not fetched yet (0 when unknown)."""
        if self.position is None or self.highwater is None:
            return 0
        return max(0, self.highwater - self.position)


@dataclass
class _Watch:
    position: int
    fetched_at: float | None
    since: float
    flagged: bool = False


class StallDetector:
    """Flags each partition once per stall; positions that move or lag 0 reset its clock."""

    def __init__(self, timeout_s: float) -> None:
        """``timeout_s`` <= 0 disables detection (nothing is ever flagged)."""
        self.timeout_s = timeout_s
        self._watch: dict[Hashable, _Watch] = {}

    def observe(self, key: Hashable, sample: PartitionSample, now: float) -> bool:
        """Record a sample taken at ``now`` (seconds); True when this sample starts a stall."""
        if self.timeout_s <= 0 or sample.lag <= 0 or sample.position is None:
            self._watch.pop(key, None)
            return False
        watch = self._watch.get(key)
        if watch is None or watch.position != sample.position:
            self._watch[key] = _Watch(sample.position, sample.fetched_at, now)
            return False
        if sample.fetched_at is None or sample.fetched_at == watch.fetched_at:
            # No fetch answered since the last sample: the consumer holds unconsumed records
            # (back-pressure) or the broker is unreachable. Neither is this kind of stall.
            watch.since = now
            return False
        watch.fetched_at = sample.fetched_at
        if not watch.flagged and now - watch.since >= self.timeout_s:
            watch.flagged = True
            return True
        return False

    def forget(self, key: Hashable) -> None:
        """Drop a partition's state (revoked, or recovered by a rejoin)."""
        self._watch.pop(key, None)

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Keep the state of ``keys`` only (the partitions still assigned)."""
        keep = set(keys)
        for key in [k for k in self._watch if k not in keep]:
            del self._watch[key]


@dataclass(frozen=True)
class Action:
    """One recovery step: seek the partition to ``offset``, or rejoin the consumer group."""

    kind: Literal["seek", "rejoin"]
    offset: int | None = None


def recovery_offsets(
    stuck: int, committed: int | None, *, first_step: int = 64, factor: int = 4
) -> Iterator[int]:
    """Offsets to seek to, in order, for a partition stuck at ``stuck``; strictly decreasing.

    First the group's committed offset when it lies below (the usual remedy for a stuck fetch
    on Kafka), then ever larger steps back: a client does not know where the record batch
    that holds ``stuck`` begins, and fetching from that batch's base (or earlier) is what heals
    a broker that cannot serve a position inside a batch. Ends at offset 0: below the log start
    the consumer's ``auto_offset_reset=earliest`` takes over. Records already processed come
    again, which the caller must drop (Faust drops offsets below its read offset).
    """
    last = stuck
    if committed is not None and 0 <= committed < stuck:
        last = committed
        yield committed
    step = max(1, first_step)
    while last > 0:
        target = max(0, stuck - step)
        if target < last:
            last = target
            yield target
        step *= max(2, factor)


class Recovery:
    """The recovery of one stalled partition: seek back step by step, then rejoin the group.

    Call :meth:`poll` on every sample. It returns the next :class:`Action` to carry out, or
    None while the last one is given ``probe_s`` to show an effect. The recovery is over
    (:attr:`done`) once the position passes the stuck offset (:attr:`healed`) or after the
    rejoin.
    """

    def __init__(
        self, stuck: int, committed: int | None, now: float, probe_s: float, **steps: int
    ) -> None:
        """``steps`` (``first_step``, ``factor``) are passed to :func:`recovery_offsets`."""
        self.stuck = stuck
        self.probe_s = probe_s
        self._offsets = recovery_offsets(stuck, committed, **steps)
        self._acted_at: float | None = None
        self.actions: list[Action] = []
        self.healed = False
        self.done = False

    def poll(self, position: int | None, now: float) -> Action | None:
        """The next action given the partition's current fetch position, or None to wait."""
        if self.done:
            return None
        if position is not None and position > self.stuck:
            self.healed = self.done = True
            return None
        if self._acted_at is not None and now - self._acted_at < self.probe_s:
            return None
        self._acted_at = now
        offset = next(self._offsets, None)
        action = Action("rejoin") if offset is None else Action("seek", offset)
        if action.kind == "rejoin":
            self.done = True
        self.actions.append(action)
        return action
