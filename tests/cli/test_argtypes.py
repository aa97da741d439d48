"""CLI value types: the accepted range of each, and a clear message outside it."""

from __future__ import annotations

import argparse

import pytest

from promptrec.cli import argtypes


@pytest.mark.parametrize(
    ("fn", "good", "bad"),
    [
        (argtypes.positive_int, {"1": 1, "42": 42}, ["0", "-3", "1.5", "x", ""]),
        (argtypes.non_negative_int, {"0": 0, "7": 7}, ["-1", "2.0", "nan"]),
        (argtypes.port, {"0": 0, "65535": 65535}, ["65536", "-1", "http"]),
        (argtypes.non_negative_float, {"0": 0.0, "2.5": 2.5}, ["-0.1", "inf", "nan", "x"]),
        (argtypes.positive_float, {"1e-3": 1e-3}, ["0", "-1", "inf", "nan"]),
        (argtypes.fraction, {"0": 0.0, "0.3": 0.3}, ["1", "1.0", "-0.1", "nan"]),
    ],
)
def test_ranges(fn: object, good: dict[str, float], bad: list[str]) -> None:
    assert callable(fn)
    for text, value in good.items():
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            fn(text)
