"""PromptTemplates: defaults, rendering rules, optional segments, validation and user files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptrec.encoder import PromptError, PromptTemplates


@pytest.fixture
def templates() -> PromptTemplates:
    return PromptTemplates.default()


def _write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(content, encoding="utf-8")
    return path


def test_defaults_have_required_templates(templates: PromptTemplates) -> None:
    assert {"item", "user", "item_zero_shot"} <= set(templates.names)
    assert templates.names == sorted(templates.names)
    assert "{title}" in templates.template("item")
    assert "{text}" in templates.template("item")
    assert "{profile}" in templates.template("user")


def test_item_render_full(templates: PromptTemplates) -> None:
    text = templates.render(
        "item",
        {
            "item_id": "i1",
            "title": "Dune",
            "text": "A desert planet.",
            "category": "books",
            "genres": ["sci-fi", "classic"],
            "tags": ("space", "politics"),
        },
    )
    assert text == (
        "Item: Dune. Category: books. Genres: sci-fi, classic. Tags: space, politics. "
        "Description: A desert planet."
    )


def test_missing_fields_drop_their_segments(templates: PromptTemplates) -> None:
    text = templates.render("item", {"title": "Dune", "category": None, "genres": []})
    assert text == "Item: Dune."
    assert "Category" not in text
    assert ": ." not in text


def test_all_fields_empty_renders_empty(templates: PromptTemplates) -> None:
    assert templates.render("user", {}) == ""
    assert templates.render("item", {"title": "  ", "text": None}) == ""


def test_user_render_with_profile_dict(templates: PromptTemplates) -> None:
    profile = {"age": 30, "interests": ["jazz", "hiking"], "city": None}
    text = templates.render("user", {"profile": profile, **profile, "user_id": "u1"})
    assert text.startswith("A user with profile: age: 30; interests: jazz, hiking.")
    assert "Interests: jazz, hiking." in text
    assert "city" not in text  # empty values are skipped inside mappings
    assert "u1" not in text


def test_value_rendering_rules() -> None:
    t = PromptTemplates({"t": "{v}"})
    assert t.render("t", {"v": 3}) == "3"
    assert t.render("t", {"v": 2.5}) == "2.5"
    assert t.render("t", {"v": float("nan")}) == ""
    assert t.render("t", {"v": True}) == "True"
    assert t.render("t", {"v": None}) == ""
    assert t.render("t", {"v": ["a", "", None, 1]}) == "a, 1"
    assert t.render("t", {"v": {"b", "a"}}) == "a, b"
    assert t.render("t", {"v": {"k": "v", "k2": ["x", "y"], "k3": ""}}) == "k: v; k2: x, y"
    assert t.render("t", {"v": "multi\n\n  line\ttext"}) == "multi line text"
    assert t.render("t", {}) == ""


def test_field_values_are_not_format_strings() -> None:
    t = PromptTemplates({"t": "Title: {title}."})
    assert t.render("t", {"title": "{__class__} {0} {x.y}"}) == "Title: {__class__} {0} {x.y}."


def test_literal_braces() -> None:
    t = PromptTemplates({"t": "{{json}} {a}"})
    assert t.render("t", {"a": "x"}) == "{json} x"


def test_optional_segment_rule() -> None:
    t = PromptTemplates({"t": "Start. | A {a} and {b}. | Constant part. | End {c}"})
    assert t.render("t", {}) == "Start. Constant part."
    assert t.render("t", {"a": "1"}) == "Start. A 1 and. Constant part."
    assert t.render("t", {"b": "2", "c": "3"}) == "Start. A and 2. Constant part. End 3"


def test_punctuation_artefacts_are_cleaned() -> None:
    t = PromptTemplates({"t": "Item: {title}. | Note ({note}) {x} , done"})
    assert t.render("t", {"title": "Great!", "x": "y"}) == "Item: Great! Note y, done"
    assert t.render("t", {"title": "Wait..."}) == "Item: Wait..."
    assert t.render("t", {"title": "Dune."}) == "Item: Dune."


def test_max_chars_cuts_fields_and_result(templates: PromptTemplates) -> None:
    fields = {"title": "T" * 50, "text": "word " * 100}
    text = templates.render("item", fields, max_chars=20)
    assert len(text) <= 20
    t = PromptTemplates({"t": "{a} | {b}"})
    assert t.render("t", {"a": "abcdef", "b": "uvwxyz"}, max_chars=9) == "abcdef uv"
    assert t.render("t", {"a": "abcdef", "b": "uvwxyz"}, max_chars=7) == "abcdef"
    assert t.render("t", {"a": "abcdef", "b": "uvwxyz"}) == "abcdef uvwxyz"
    with pytest.raises(ValueError):
        t.render("t", {}, max_chars=0)


def test_unknown_template_name(templates: PromptTemplates) -> None:
    with pytest.raises(PromptError, match="unknown prompt template 'nope'"):
        templates.render("nope", {})
    with pytest.raises(PromptError):
        templates.template("nope")


@pytest.mark.parametrize(
    "template",
    [
        "{x.__class__}",
        "{x[0]}",
        "{x!r}",
        "{x:>10}",
        "{}",
        "{0}",
        "{ x }",
        "{x",
        "x}",
        "{x:{y}}",
        "",
        "   ",
    ],
)
def test_bad_templates_are_rejected(template: str) -> None:
    with pytest.raises(PromptError):
        PromptTemplates({"t": template})


def test_bad_template_values_and_names() -> None:
    with pytest.raises(PromptError):
        PromptTemplates({"t": 3})  # type: ignore[dict-item]
    with pytest.raises(PromptError):
        PromptTemplates({"": "{a}"})
    with pytest.raises(PromptError):
        PromptTemplates(["{a}"])  # type: ignore[arg-type]


def test_load_none_is_default() -> None:
    assert PromptTemplates.load(None).names == PromptTemplates.default().names


def test_load_overrides_and_extends(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"item": "Product {title}", "query": "Query: {q}"}))
    loaded = PromptTemplates.load(path)
    assert loaded.render("item", {"title": "Dune", "text": "ignored"}) == "Product Dune"
    assert loaded.render("query", {"q": "boots"}) == "Query: boots"
    assert loaded.template("user") == PromptTemplates.default().template("user")


def test_load_empty_object_gives_defaults(tmp_path: Path) -> None:
    loaded = PromptTemplates.load(_write(tmp_path, "{}"))
    assert loaded.names == PromptTemplates.default().names


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="does not exist"):
        PromptTemplates.load(tmp_path / "missing.json")
    with pytest.raises(PromptError, match="does not exist"):
        PromptTemplates.load(tmp_path)  # a folder


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "JSON object"),
        ('"just a string"', "JSON object"),
        ('{"item": 3}', "not a string: item"),
        ('{"item": {"nested": "x"}}', "not a string: item"),
        ('{"item": "{title.upper}"}', "attribute"),
        ('{"item": "{0}"}', "positional"),
        ('{"item": "{title!s}"}', "conversion"),
        ('{"item": ""}', "non-empty"),
    ],
)
def test_load_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(PromptError, match=message) as info:
        PromptTemplates.load(path)
    assert str(path) in str(info.value)


def test_load_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    path.write_bytes(b'{"item": "\xff\xfe"}')
    with pytest.raises(PromptError, match="cannot read"):
        PromptTemplates.load(path)


def test_every_default_template_renders(templates: PromptTemplates) -> None:
    attributes = {"category": "books", "genres": ["sci-fi"], "tags": ["space"], "brand": "Ace"}
    item = {
        "item_id": "i9",
        "title": "Dune",
        "text": "Spice.",
        **attributes,
        "attributes": attributes,
    }
    profile = {"interests": ["jazz"], "genres": ["drama"], "categories": ["music"]}
    user = {"user_id": "u1", "profile": profile, **profile, "history": ["Dune", "Emma"]}
    for name in templates.names:
        text = templates.render(name, {**item, **user})
        assert text, name
        assert "{" not in text and "}" not in text, name
        assert "i9" not in text and "u1" not in text, name  # ids carry no meaning for the encoder
    assert templates.render("item_attributes", item) == (
        "Item: Dune. Attributes: category: books; genres: sci-fi; tags: space; brand: Ace. "
        "Description: Spice."
    )
