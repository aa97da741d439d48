"""``PROMPTREC_FAULT_INJECTION``: valid values parse, garbage is a clear validation error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from promptrec.streams.settings import StreamSettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("encode=2", {"encode": 2}),
        ("encode=4,recommend=6", {"encode": 4, "recommend": 6}),
        (" learn = 1 , sync=0 ", {"learn": 1, "sync": 0}),
        (
            "encode=1,recommend=2,learn=3,checkpoint=4,sync=5",
            {"encode": 1, "recommend": 2, "learn": 3, "checkpoint": 4, "sync": 5},
        ),
        ("checkpoint=999999999", {"checkpoint": 999999999}),
    ],
)
def test_valid_values_parse_to_stage_counts(raw: str, expected: dict[str, int]) -> None:
    assert StreamSettings(fault_injection=raw).faults == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("explode=1", "stage 'explode' is unknown"),
        ("Encode=1", "stage 'Encode' is unknown"),
        ("=3", "stage '' is unknown"),
        ("encode", "entry 'encode' is not stage=N"),
        ("encode:1", "entry 'encode:1' is not stage=N"),
        ("encode=", "count '' of stage 'encode'"),
        ("encode=-1", "count '-1' of stage 'encode'"),
        ("encode=+1", "count '+1' of stage 'encode'"),
        ("encode=1.5", "count '1.5' of stage 'encode'"),
        ("encode=two", "count 'two' of stage 'encode'"),
        ("encode=1=2", "count '1=2' of stage 'encode'"),
        ("encode=\u00b2", "count '\u00b2' of stage 'encode'"),  # superscript two: isdigit()
        ("encode=\u0661", "count '\u0661' of stage 'encode'"),  # Arabic-Indic one: int() = 1
        ("encode=1000000000", "count '1000000000' of stage 'encode'"),
        ("encode=" + "9" * 5000, "of stage 'encode' is not a whole number"),
        ("encode=1,,learn=2", "has an empty entry"),
        ("encode=1,", "has an empty entry"),
        (",encode=1", "has an empty entry"),
        (",", "has an empty entry"),
        ("encode=1,encode=2", "names stage 'encode' twice"),
        ("encode=1, encode =1", "names stage 'encode' twice"),
    ],
)
def test_garbage_is_a_validation_error_naming_the_problem(raw: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        StreamSettings(fault_injection=raw)
    errors = info.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("fault_injection",)
    assert problem in errors[0]["msg"], errors[0]["msg"]


def test_garbage_from_the_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTREC_FAULT_INJECTION", "encode=1,learn=x")
    with pytest.raises(ValidationError) as info:
        StreamSettings()
    assert "count 'x' of stage 'learn'" in str(info.value)
    monkeypatch.setenv("PROMPTREC_FAULT_INJECTION", "recommend=3")
    assert StreamSettings().faults == {"recommend": 3}
