"""``promptrec settings``: the effective settings, or the README's settings tables (``--markdown``).

The tables come from the settings objects themselves (env variable, type, default, description),
one per class; a subclass lists only the fields it adds (StreamSettings extends ServingSettings).
In README.md each table sits between marker comments::

    <!-- settings:StreamSettings -->
    ...generated...
    <!-- /settings -->

``--update FILE`` rewrites every such block of FILE and ``--check FILE`` exits 1 when one is out
of date; tests/test_readme.py checks README.md the same way. Registered by
:mod:`promptrec.cli.main`; the settings modules are imported when the command runs.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import re
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

__all__ = [
    "SETTINGS_MODULES",
    "SettingsDocError",
    "own_fields",
    "register",
    "render_block",
    "settings_class",
    "settings_markdown",
    "update_blocks",
]

# Every settings class, in the README's order, and the module that defines it.
SETTINGS_MODULES: dict[str, str] = {
    "ServingSettings": "promptrec.serving.settings",
    "StreamSettings": "promptrec.streams.settings",
    "EncoderSettings": "promptrec.encoder.settings",
    "IndexSettings": "promptrec.index.settings",
}
# The classes a worker builds from its environment (each holds its bases' fields too).
_WORKER_CLASSES = ("StreamSettings", "EncoderSettings", "IndexSettings")
_OPEN = re.compile(r"<!-- settings:(?P<name>\S*) -->")
_CLOSE = "<!-- /settings -->"
_OPS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_SCALARS: dict[Any, str] = {
    int: "int",
    float: "float",
    str: "string",
    bool: "bool",
    Path: "path",
    SecretStr: "secret string",
}


class SettingsDocError(ValueError):
    """A settings class that cannot be documented, or a file whose marker blocks are broken."""


def settings_class(name: str) -> type[BaseSettings]:
    """The settings class called ``name`` (a key of :data:`SETTINGS_MODULES`).

    Raises:
        SettingsDocError: No such settings class.
    """
    if name not in SETTINGS_MODULES:
        known = ", ".join(SETTINGS_MODULES)
        raise SettingsDocError(f"no settings class {name!r}; known: {known}")
    cls: type[BaseSettings] = getattr(importlib.import_module(SETTINGS_MODULES[name]), name)
    return cls


def own_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields ``cls`` declares itself, not those it inherits from another settings class."""
    inherited: set[str] = set()
    for base in cls.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, BaseSettings) and base is not BaseSettings:
            inherited |= set(base.model_fields)
    return {name: f for name, f in cls.model_fields.items() if name not in inherited}


def _prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def _type_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        inner = " or ".join(_type_text(a) for a in present)
        return f"{inner} (optional)" if len(present) < len(args) else inner
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise SettingsDocError(f"no documentation name for type {annotation!r}")


def _bounds(field: FieldInfo) -> str:
    """The numeric limits of a field: ``1..1024``, ``>= 0``, ``> 0`` or nothing."""
    # pydantic keeps Field(ge=...) etc. as annotated-types markers with one attribute each.
    limits = {
        attr: getattr(meta, attr)
        for meta in field.metadata
        for attr in _OPS
        if getattr(meta, attr, None) is not None
    }
    if "ge" in limits and "le" in limits:
        return f"{limits['ge']}..{limits['le']}"
    return ", ".join(f"{op} {limits[attr]}" for attr, op in _OPS.items() if attr in limits)


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is PydanticUndefined:
        return "(required)"
    if value is None:
        return "—"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def _cell(text: str) -> str:
    # A table cell is one line, and a bare | would end it.
    return " ".join(text.split()).replace("|", "\\|")


def render_block(name: str) -> str:
    """The generated body of the ``<!-- settings:NAME -->`` block: a heading line and a table.

    Raises:
        SettingsDocError: Unknown class, a field without description or of an undocumented type.
    """
    cls = settings_class(name)
    prefix = _prefix(cls)
    parents = [b.__name__ for b in cls.__mro__[1:] if b.__name__ in SETTINGS_MODULES]
    heading = f"**{name}** (`{SETTINGS_MODULES[name]}`, env prefix `{prefix}`)"
    if parents:
        bases = " and ".join(f"**{p}**" for p in parents)
        heading += f" adds these to {bases} (a worker reads both):"
    lines = [heading, "", "| env variable | type | default | meaning |", "|---|---|---|---|"]
    for field_name, field in own_fields(cls).items():
        if not field.description:
            raise SettingsDocError(f"{name}.{field_name} has no description (Field(description=))")
        kind = _type_text(field.annotation)
        bounds = _bounds(field)
        if bounds:
            kind = f"{kind}, {bounds}"
        env = f"{prefix}{field_name.upper()}"
        cells = (f"`{env}`", kind, _default_text(field), field.description)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def settings_markdown(names: Iterable[str] = SETTINGS_MODULES) -> str:
    """Every requested table inside its marker comments, blank-line separated."""
    return "\n".join(f"<!-- settings:{name} -->\n{render_block(name)}{_CLOSE}\n" for name in names)


def update_blocks(text: str) -> str:
    """``text`` with the body of every settings marker block regenerated.

    A block is an opening line ``<!-- settings:NAME -->``, any lines, and a closing line
    ``<!-- /settings -->``; everything outside the blocks is kept as it is.

    Raises:
        SettingsDocError: No block at all, a block opened inside another, a stray or missing
            closing line, an unknown class name, or a class documented twice (each with its line).
    """
    out: list[str] = []
    current: tuple[str, int] | None = None
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.strip()
        opening = _OPEN.fullmatch(stripped)
        if opening:
            name = opening["name"]
            if current is not None:
                raise SettingsDocError(
                    f"line {number}: block {name!r} opens inside block {current[0]!r} "
                    f"(line {current[1]}), which is not closed"
                )
            if name not in SETTINGS_MODULES:
                known = ", ".join(SETTINGS_MODULES)
                raise SettingsDocError(f"line {number}: no settings class {name!r}; known: {known}")
            if name in seen:
                raise SettingsDocError(f"line {number}: settings block {name!r} appears twice")
            seen.add(name)
            current = (name, number)
            out += [line, render_block(name)]
        elif stripped == _CLOSE:
            if current is None:
                raise SettingsDocError(f"line {number}: {_CLOSE} without an opening block")
            current = None
            out.append(line)
        elif current is None:
            out.append(line)
    if current is not None:
        raise SettingsDocError(f"line {current[1]}: block {current[0]!r} is never closed")
    if not seen:
        raise SettingsDocError("no <!-- settings:NAME --> ... <!-- /settings --> block found")
    return "".join(out)


def _effective() -> list[str]:
    """``ENV=value`` lines of the settings a worker would use now (env and defaults)."""
    instances = [settings_class(name)() for name in _WORKER_CLASSES]
    lines = []
    for name in SETTINGS_MODULES:
        cls = settings_class(name)
        source = next(i for i in instances if isinstance(i, cls))
        for field_name in own_fields(cls):
            env = f"{_prefix(cls)}{field_name.upper()}"
            value = getattr(source, field_name)
            # SecretStr prints as asterisks: the command never shows a secret.
            lines.append(f"# {env} is unset" if value is None else f"{env}={value}")
    return lines


def _cmd_settings(args: argparse.Namespace) -> int:
    try:
        if args.update is not None or args.check is not None:
            path: Path = args.update or args.check
            text = path.read_text(encoding="utf-8")
            fresh = update_blocks(text)
            if args.check is not None:
                if fresh != text:
                    _err(f"{path}: settings tables are out of date (run with --update {path})")
                    return 1
                return 0
            if fresh != text:
                path.write_text(fresh, encoding="utf-8")
            print(f"{'updated' if fresh != text else 'up to date:'} {path}")
            return 0
        names = args.classes or list(SETTINGS_MODULES)
        for name in names:
            settings_class(name)  # unknown names fail before any output
        if args.markdown:
            sys.stdout.write(settings_markdown(names))
        else:
            print("\n".join(_effective()))
        return 0
    except SettingsDocError as exc:
        _err(str(exc))
        return 2


def _err(message: str) -> None:
    print(f"promptrec settings: error: {message}", file=sys.stderr)


def register(sub: Any) -> None:
    """Add ``settings`` to the ``promptrec`` subparsers."""
    text = "Print the effective settings (env and defaults), or the README tables (--markdown)."
    p = sub.add_parser("settings", help=text, description=text)
    p.add_argument("--markdown", action="store_true", help="the settings tables, as in README.md")
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        choices=list(SETTINGS_MODULES),
        help="only this settings class (repeatable; with --markdown)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--update", type=Path, metavar="FILE", help="rewrite FILE's settings marker blocks"
    )
    mode.add_argument(
        "--check", type=Path, metavar="FILE", help="exit 1 if FILE's settings tables are stale"
    )
    p.set_defaults(func=_cmd_settings)
