"""gc.freeze of the worker's long-lived heap: garbage is collected first, survivors frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from promptrec.streams.heap import freeze_long_lived


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_cycles_are_collected_and_survivors_frozen() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a reference cycle: only the collector frees it
    dead = weakref.ref(a)
    del a, b
    kept = [_Node()]
    frozen = freeze_long_lived("in a test")
    assert dead() is None  # collected before the freeze, not frozen forever
    assert frozen == gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())  # out of the collector's walk
    assert kept[0].other is None  # and still alive
