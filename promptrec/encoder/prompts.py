"""Prompt templates that wrap item and user fields into text for the encoder (P5-style prompting).

A template is plain text with ``{field}`` placeholders. Only bare identifiers are accepted:
attribute or index access (``{x.y}``, ``{x[0]}``), conversions (``{x!r}``), format specs
(``{x:>9}``) and positional fields (``{}``, ``{0}``) are rejected with :class:`PromptError` when the
templates are loaded. Rendering never calls ``str.format``: placeholders are substituted from a
pre-parsed form, so field values cannot reach Python's format machinery. ``{{`` and ``}}`` give
literal braces.

Optional segments: a template is split on ``" | "`` (space, pipe, space) into segments. A segment
whose placeholders all render empty is dropped; a segment without placeholders is always kept. The
kept segments are joined with a single space, so each segment carries its own punctuation, e.g.
``"Item: {title}. | Category: {category}."`` renders ``"Item: Dune."`` when there is no category.

Field values render as follows: missing or ``None`` -> ``""``; non-finite numbers -> ``""``; other
numbers and booleans -> ``str(value)``; lists, tuples and sets -> items joined with ``", "``
(sets sorted); mappings -> ``"k: v; k2: v2"`` (empty values skipped). When ``max_chars`` is given,
each field value is cut to that many characters first, and the whole result is cut again.

Clean-up after rendering: whitespace runs collapse to one space; a template ``"."`` right after a
value that already ends in ``.``, ``!`` or ``?`` is skipped (no ``"Great!."``); empty ``()`` and
``[]`` are removed; a lone ``,``, ``.`` or ``;`` preceded by a space moves onto the previous word;
leading and trailing spaces, commas, semicolons and pipes are stripped.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from promptrec.encoder.exceptions import PromptError

__all__ = ["SEGMENT_SEPARATOR", "PromptTemplates"]

SEGMENT_SEPARATOR = " | "

_DEFAULTS_RESOURCE = "prompts.json"
_FORMATTER = string.Formatter()
_WHITESPACE = re.compile(r"\s+")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
_LONE_PUNCTUATION = re.compile(r"\s+([,.;])(?=\s|$)")
_TERMINAL = (".", "!", "?")
_STRIP_CHARS = " ,;|"
_MAX_DEPTH = 4  # nesting deeper than this renders via str(); also guards against cycles

# One part is (literal text, field name or None); a segment is the parts between two " | ".
_Part = tuple[str, str | None]
_Segment = tuple[_Part, ...]


def _compile(name: object, template: object) -> tuple[_Segment, ...]:
    """Parses and validates one template into segments of (literal, field) parts."""
    if not isinstance(name, str) or not name.strip():
        raise PromptError(f"template names must be non-empty strings, got {name!r}")
    if not isinstance(template, str) or not template.strip():
        raise PromptError(f"template {name!r} must be a non-empty string, got {template!r}")
    segments: list[_Segment] = []
    for raw in template.split(SEGMENT_SEPARATOR):
        try:
            parsed = list(_FORMATTER.parse(raw))
        except ValueError as exc:  # unbalanced braces
            raise PromptError(f"template {name!r} is malformed: {exc}") from exc
        parts: list[_Part] = []
        for literal, field, spec, conversion in parsed:
            if field is None:
                parts.append((literal, None))
                continue
            if field == "" or field.isdigit():
                raise PromptError(
                    f"template {name!r}: positional placeholder {{{field}}} is not allowed; "
                    "use a named field such as {title}"
                )
            if not field.isidentifier():
                raise PromptError(
                    f"template {name!r}: placeholder {{{field}}} must be a plain field name "
                    "(no attribute or index access)"
                )
            if conversion is not None or spec:
                raise PromptError(
                    f"template {name!r}: placeholder {{{field}}} must not have a conversion "
                    "or format spec"
                )
            parts.append((literal, field))
        segments.append(tuple(parts))
    return tuple(segments)


def _format_value(value: object, depth: int = 0) -> str:
    """Renders one field value as text (see the module docstring for the rules)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Real):
        return str(value) if math.isfinite(float(value)) else ""
    if depth >= _MAX_DEPTH:
        return str(value).strip()
    if isinstance(value, Mapping):
        pairs = ((str(k).strip(), _format_value(v, depth + 1)) for k, v in value.items())
        return "; ".join(f"{k}: {v}" for k, v in pairs if k and v)
    if isinstance(value, set | frozenset):
        rendered = sorted(_format_value(v, depth + 1) for v in value)
        return ", ".join(r for r in rendered if r)
    if isinstance(value, list | tuple):
        rendered = [_format_value(v, depth + 1) for v in value]
        return ", ".join(r for r in rendered if r)
    return str(value).strip()


def _cut(text: str, max_chars: int | None) -> str:
    """Cuts ``text`` to at most ``max_chars`` characters."""
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars].rstrip()


def _tidy(text: str) -> str:
    """Collapses whitespace and removes punctuation artefacts left by empty fields."""
    text = _WHITESPACE.sub(" ", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _LONE_PUNCTUATION.sub(r"\1", text)
    return _WHITESPACE.sub(" ", text).strip(_STRIP_CHARS)


class PromptTemplates:
    """A validated, immutable set of named prompt templates.

    Args:
        templates: Template name -> template text.

    Raises:
        PromptError: A name or template is invalid (see the module docstring).
    """

    def __init__(self, templates: Mapping[str, str]) -> None:
        if not isinstance(templates, Mapping):
            raise PromptError(f"templates must be a mapping of name -> template, got {templates!r}")
        self._templates: dict[str, str] = {}
        self._compiled: dict[str, tuple[_Segment, ...]] = {}
        for name, template in templates.items():
            self._compiled[name] = _compile(name, template)
            self._templates[name] = template

    @classmethod
    def default(cls) -> PromptTemplates:
        """The templates bundled with the package (``prompts.json``)."""
        return cls(_default_raw())

    @classmethod
    def load(cls, path: Path | None) -> PromptTemplates:
        """The defaults, overridden and extended by a user JSON file ``{"name": "template"}``.

        Args:
            path: The user file; ``None`` gives the defaults.

        Raises:
            PromptError: The file is missing, unreadable, not JSON, not an object of strings, or
                holds an invalid template.
        """
        if path is None:
            return cls.default()
        path = Path(path)
        if not path.is_file():
            raise PromptError(f"prompts file {path} does not exist or is not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PromptError(f"cannot read prompts file {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptError(f"prompts file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PromptError(
                f"prompts file {path} must hold a JSON object of template name -> template "
                f"string, got {type(data).__name__}"
            )
        bad = sorted(str(k) for k, v in data.items() if not isinstance(v, str))
        if bad:
            raise PromptError(
                f"prompts file {path}: templates must be strings; not a string: {', '.join(bad)}"
            )
        try:
            return cls({**_default_raw(), **data})
        except PromptError as exc:
            raise PromptError(f"prompts file {path}: {exc}") from exc

    @property
    def names(self) -> list[str]:
        """The template names, sorted."""
        return sorted(self._templates)

    def template(self, name: str) -> str:
        """The raw text of template ``name``.

        Raises:
            PromptError: No template has that name.
        """
        self._check_name(name)
        return self._templates[name]

    def render(self, name: str, fields: Mapping[str, object], max_chars: int | None = None) -> str:
        """Fills template ``name`` with ``fields``; the result may be ``""`` if all are empty.

        Args:
            name: The template name.
            fields: Field name -> value; extra fields are ignored, missing ones render empty.
            max_chars: Cut each field value, and then the result, to this many characters.

        Raises:
            PromptError: No template has that name.
            ValueError: ``max_chars`` is smaller than 1.
        """
        self._check_name(name)
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be >= 1 or None, got {max_chars}")
        values: dict[str, str] = {}
        pieces: list[str] = []
        for segment in self._compiled[name]:
            names = [part[1] for part in segment if part[1] is not None]
            for key in names:
                if key not in values:
                    values[key] = _cut(_format_value(fields.get(key)), max_chars)
            if names and not any(values[key] for key in names):
                continue  # optional segment: every placeholder is empty
            out = ""
            for literal, field in segment:
                if literal.startswith(".") and out.rstrip().endswith(_TERMINAL):
                    literal = literal[1:]  # the value already ends a sentence
                out += literal
                if field is not None:
                    out += values[field]
            pieces.append(out)
        return _cut(_tidy(" ".join(pieces)), max_chars)

    def _check_name(self, name: str) -> None:
        if name not in self._templates:
            raise PromptError(
                f"unknown prompt template {name!r}; known: {', '.join(self.names) or 'none'}"
            )

    def __repr__(self) -> str:
        return f"PromptTemplates(names={self.names!r})"


def _default_raw() -> dict[str, str]:
    """Reads the bundled default templates."""
    try:
        text = resources.files("promptrec.encoder").joinpath(_DEFAULTS_RESOURCE).read_text("utf-8")
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise PromptError(f"bundled {_DEFAULTS_RESOURCE} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise PromptError(f"bundled {_DEFAULTS_RESOURCE} is not a JSON object")
    return data
