"""Every setting of every package rejects garbage from the environment with an error naming it.

A contract over the settings objects, like River's checks over models: a setting added later is
covered without a test of its own. For each field the garbage is derived from its type and
bounds (a word for numbers and booleans, a value outside each ``ge/gt/le/lt`` bound, an unknown
choice for ``Literal``s, broken JSON for structured values); free-text and path settings accept
any string and are listed as such, so a new field of an unhandled type fails the test instead
of passing silently.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any, Literal, get_args, get_origin

import annotated_types
import pytest
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsError

from promptrec.encoder.settings import EncoderSettings
from promptrec.index.settings import IndexSettings
from promptrec.serving.settings import ServingSettings
from promptrec.streams.settings import StreamSettings

SETTINGS: tuple[type[BaseSettings], ...] = (
    EncoderSettings,
    IndexSettings,
    ServingSettings,
    StreamSettings,
)
FREE_TEXT = (str, SecretStr)  # and pathlib paths: any string is a valid value


def _base_type(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _out_of_bounds(info: FieldInfo) -> list[str]:
    # One step past each inclusive bound; an exclusive bound itself.
    values: list[str] = []
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge):
            values.append(str(typing.cast(Any, bound.ge) - 1))
        elif isinstance(bound, annotated_types.Gt):
            values.append(str(bound.gt))
        elif isinstance(bound, annotated_types.Le):
            values.append(str(typing.cast(Any, bound.le) + 1))
        elif isinstance(bound, annotated_types.Lt):
            values.append(str(bound.lt))
    return values


def garbage_for(info: FieldInfo) -> list[str] | None:
    """Values the field must reject; ``None`` for free text (any string is valid)."""
    base = _base_type(info.annotation)
    if base is bool:
        return ["maybe"]
    if base in (int, float):
        return ["garbage", *_out_of_bounds(info)]
    if get_origin(base) is Literal:
        return ["no-such-choice"]
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return ["no-such-choice"]
    if base in FREE_TEXT or (isinstance(base, type) and base.__module__.startswith("pathlib")):
        return None
    # Structured values (lists, dicts, models) come from the environment as JSON.
    return ["{not json"]


def _cases() -> list[tuple[type[BaseSettings], str, str]]:
    cases = []
    for cls in SETTINGS:
        for name, info in cls.model_fields.items():
            if name in getattr(cls.__base__, "model_fields", {}):
                continue  # inherited: checked on the class that defines it
            for value in garbage_for(info) or []:
                cases.append((cls, name, value))
    return cases


def _env_name(cls: type[BaseSettings], name: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    _cases(),
    ids=[f"{c.__name__}.{n}={v}" for c, n, v in _cases()],
)
def test_garbage_from_the_environment_is_an_error_naming_the_setting(
    cls: type[BaseSettings], name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_env_name(cls, name), value)
    with pytest.raises((ValidationError, SettingsError)) as raised:
        cls()
    assert name in str(raised.value)


def test_every_field_is_covered_or_free_text() -> None:
    # A field whose type the contract cannot corrupt must be free text by design; list them so
    # a new free-text setting is a visible decision (and gets its own validation if it needs one).
    free = sorted(
        f"{cls.__name__}.{name}"
        for cls in SETTINGS
        for name, info in cls.model_fields.items()
        if garbage_for(info) is None and name not in getattr(cls.__base__, "model_fields", {})
    )
    covered = {(c, n) for c, n, _ in _cases()}
    total = sum(
        1
        for cls in SETTINGS
        for name in cls.model_fields
        if name not in getattr(cls.__base__, "model_fields", {})
    )
    assert len(covered) + len(free) == total
    assert len(covered) > len(free)  # most settings are numbers, flags and choices
    for entry in free:
        cls_name, name = entry.split(".")
        cls = next(c for c in SETTINGS if c.__name__ == cls_name)
        base = _base_type(cls.model_fields[name].annotation)
        assert base in FREE_TEXT or base.__module__.startswith("pathlib"), entry


def test_the_contract_rejects_what_it_claims() -> None:
    # The derivation itself, on a known field: batch_size is int, ge=1, le=4096.
    info = EncoderSettings.model_fields["batch_size"]
    assert garbage_for(info) == ["garbage", "0", "4097"]
    assert garbage_for(EncoderSettings.model_fields["fp16"]) == ["maybe"]
    assert garbage_for(EncoderSettings.model_fields["device"]) == ["no-such-choice"]
    assert garbage_for(EncoderSettings.model_fields["item_prompt"]) is None
