"""The README stays true: its two commands, every setting, every topic example, CI's command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptrec.encoder.settings import EncoderSettings
from promptrec.events.schemas import EXAMPLES
from promptrec.index.settings import IndexSettings
from promptrec.streams.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make run" in first_screen and "make test" in first_screen


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert any(line.strip() == "make test" for line in script.splitlines())


@pytest.mark.parametrize("settings", [StreamSettings, EncoderSettings, IndexSettings])
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
