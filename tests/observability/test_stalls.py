"""The stall decisions of the watchdog, on a fake clock: what is a stall, what recovery tries."""

from __future__ import annotations

import pytest

from promptrec.observability.stalls import (
    Action,
    PartitionSample,
    Recovery,
    StallDetector,
    recovery_offsets,
)

TIMEOUT = 30.0


class Feed:
    """Samples of one partition, one per second, with a fetch response before each."""

    def __init__(self, detector: StallDetector) -> None:
        self.detector = detector
        self.now = 0.0
        self.fetches = 0

    def tick(self, position: int | None, highwater: int | None, *, fetched: bool = True) -> bool:
        self.now += 1.0
        if fetched:
            self.fetches += 1
        sample = PartitionSample(position, highwater, float(self.fetches) if self.fetches else None)
        return self.detector.observe("p0", sample, self.now)

    def run(self, seconds: int, position: int | None, highwater: int | None, **kw: bool) -> int:
        """Ticks for ``seconds``; returns how many of them flagged a stall."""
        return sum(self.tick(position, highwater, **kw) for _ in range(seconds))


def test_lag_without_movement_for_the_timeout_is_one_stall() -> None:
    feed = Feed(StallDetector(TIMEOUT))
    flags = [feed.tick(100, 150) for _ in range(60)]
    # Watching starts at the first sample (t=1); the stall is flagged at t=31, and only once.
    assert flags.index(True) == 30
    assert sum(flags) == 1


def test_movement_resets_the_clock() -> None:
    feed = Feed(StallDetector(TIMEOUT))
    assert feed.run(25, 100, 150) == 0
    assert not feed.tick(101, 150)  # one record consumed: a new watch starts now
    assert feed.run(29, 101, 150) == 0
    assert feed.tick(101, 150)  # 30 s after the last movement


def test_zero_lag_never_stalls() -> None:
    feed = Feed(StallDetector(TIMEOUT))
    assert feed.run(300, 150, 150) == 0
    # A high watermark below the position (stale response) is no lag either.
    assert feed.run(300, 150, 140) == 0


def test_unknown_position_or_highwater_never_stalls() -> None:
    feed = Feed(StallDetector(TIMEOUT))
    assert feed.run(100, None, 150) == 0
    assert feed.run(100, 100, None) == 0
    assert PartitionSample(None, None, None).lag == 0


def test_a_partition_that_is_not_fetched_is_not_stalled() -> None:
    """Back-pressure (unconsumed records held) or a paused broker: no fetch answers arrive."""
    feed = Feed(StallDetector(TIMEOUT))
    assert feed.run(100, 100, 150, fetched=False) == 0
    # Fetching resumes: the clock starts again from there, not from the first sample.
    assert feed.run(29, 100, 150) == 0
    assert feed.tick(100, 150)


def test_a_gap_in_fetching_restarts_the_clock() -> None:
    feed = Feed(StallDetector(TIMEOUT))
    assert feed.run(20, 100, 150) == 0
    assert not feed.tick(100, 150, fetched=False)
    assert feed.run(29, 100, 150) == 0
    assert feed.tick(100, 150)


def test_zero_timeout_disables_detection() -> None:
    feed = Feed(StallDetector(0))
    assert feed.run(1000, 100, 150) == 0


def test_a_stall_is_flagged_again_only_after_the_partition_recovered() -> None:
    detector = StallDetector(TIMEOUT)
    feed = Feed(detector)
    assert feed.run(40, 100, 150) == 1
    assert feed.run(100, 100, 150) == 0  # still the same stall
    assert feed.run(5, 150, 150) == 0  # caught up
    assert feed.run(40, 150, 200) == 1  # a new stall


def test_forget_and_retain_drop_state() -> None:
    detector = StallDetector(TIMEOUT)
    feed = Feed(detector)
    feed.run(40, 100, 150)
    detector.forget("p0")
    # Watched from scratch: the first sample starts the clock, the timeout later it is flagged.
    assert feed.run(30, 100, 150) == 0
    assert feed.tick(100, 150)
    detector.retain(["other"])
    assert feed.run(30, 100, 150) == 0
    assert feed.tick(100, 150)


def test_recovery_offsets_go_to_committed_then_further_back_to_zero() -> None:
    assert list(recovery_offsets(1000, 900, first_step=64, factor=4)) == [900, 744, 0]
    assert list(recovery_offsets(1000, None, first_step=64, factor=4)) == [936, 744, 0]
    assert list(recovery_offsets(1000, 1000)) == [936, 744, 0]  # committed == stuck: skipped
    assert list(recovery_offsets(5, None)) == [0]
    assert list(recovery_offsets(0, None)) == []
    offsets = list(recovery_offsets(10**9, 12345))
    assert offsets == sorted(set(offsets), reverse=True) and offsets[-1] == 0
    assert len(offsets) < 20


def test_recovery_seeks_waits_then_escalates_to_rejoin() -> None:
    recovery = Recovery(stuck=1000, committed=None, now=0.0, probe_s=5.0)
    assert recovery.poll(1000, 0.0) == Action("seek", 936)
    assert recovery.poll(936, 4.0) is None  # the seek gets probe_s to show an effect
    assert recovery.poll(936, 5.0) == Action("seek", 744)
    assert recovery.poll(744, 10.0) == Action("seek", 0)
    assert recovery.poll(0, 15.0) == Action("rejoin")
    assert recovery.done and not recovery.healed
    assert recovery.poll(0, 100.0) is None


def test_recovery_ends_healed_once_the_position_passes_the_stuck_offset() -> None:
    recovery = Recovery(stuck=1000, committed=990, now=0.0, probe_s=5.0)
    assert recovery.poll(1000, 0.0) == Action("seek", 990)
    assert recovery.poll(995, 1.0) is None  # moving, not yet past the stuck point
    assert recovery.poll(1001, 2.0) is None
    assert recovery.healed and recovery.done
    assert recovery.actions == [Action("seek", 990)]


@pytest.mark.parametrize("position", [None, 0])
def test_recovery_of_a_reset_partition_keeps_trying(position: int | None) -> None:
    recovery = Recovery(stuck=10, committed=None, now=0.0, probe_s=1.0)
    assert recovery.poll(10, 0.0) == Action("seek", 0)
    assert recovery.poll(position, 1.0) == Action("rejoin")
