"""The README stays true: its two commands, its settings tables, every topic example, CI's command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptrec.cli.settings_doc import SETTINGS_MODULES, update_blocks
from promptrec.encoder.settings import EncoderSettings
from promptrec.events.schemas import EXAMPLES
from promptrec.index.settings import IndexSettings
from promptrec.serving.settings import ServingSettings
from promptrec.streams.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make run" in first_screen and "make test" in first_screen


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert any(line.strip() == "make test" for line in script.splitlines())


def test_settings_tables_are_the_generators_output() -> None:
    # Every settings class has its marker block, and each block's body is exactly what
    # `promptrec settings --markdown` gives (names, types, defaults, descriptions).
    for name in SETTINGS_MODULES:
        assert f"<!-- settings:{name} -->\n" in README, f"README has no block for {name}"
    assert update_blocks(README) == README, (
        "README settings tables are stale: run `promptrec settings --update README.md`"
    )


@pytest.mark.parametrize(
    "settings", [ServingSettings, StreamSettings, EncoderSettings, IndexSettings]
)
def test_every_setting_is_documented(settings: type) -> None:
    prefix = settings.model_config["env_prefix"]
    missing = [
        f"{prefix}{name.upper()}"
        for name in settings.model_fields
        if f"`{prefix}{name.upper()}`" not in README
    ]
    assert not missing


def test_every_topic_example_is_in_the_readme() -> None:
    for name, example in EXAMPLES.items():
        assert json.dumps(example) in README, name
