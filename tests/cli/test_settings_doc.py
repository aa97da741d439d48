"""``promptrec settings``: generated settings tables, README marker blocks, effective values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from promptrec.cli import settings_doc
from promptrec.cli.main import main
from promptrec.cli.settings_doc import (
    SETTINGS_MODULES,
    SettingsDocError,
    own_fields,
    render_block,
    settings_class,
    settings_markdown,
    update_blocks,
)
from promptrec.serving.settings import ServingSettings
from promptrec.streams.settings import StreamSettings


class Undocumented(BaseSettings):
    """A settings class with a field that has no description (for the error test)."""

    model_config = SettingsConfigDict(env_prefix="PROMPTREC_TEST_")

    size: int = Field(default=3, ge=1)


class Odd(BaseSettings):
    """A settings class with a type the generator has no name for."""

    model_config = SettingsConfigDict(env_prefix="PROMPTREC_TEST_")

    pairs: dict[str, int] = Field(default_factory=dict, description="Pairs.")


def test_rows_show_env_name_type_bounds_default_and_description() -> None:
    stream = render_block("StreamSettings")
    assert (
        "| `PROMPTREC_PARTITIONS` | int, 1..1024 | `4` | "
        "Partitions of keyed topics (>= number of workers). |"
    ) in stream
    assert "| `PROMPTREC_APP_ID` | string (optional) | — |" in stream
    assert "| `PROMPTREC_FAULT_INJECTION` | string | (empty) |" in stream
    assert "| `PROMPTREC_LOG_LEVEL` | one of `debug`, `info`, `warn`, `error` | `info` |" in stream
    assert "| `PROMPTREC_SASL_PASSWORD` | secret string (optional) | — |" in stream
    assert "| `PROMPTREC_LAG_POLL_INTERVAL_S` | float, >= 0 | `15.0` |" in stream
    assert "| `PROMPTREC_SESSION_TIMEOUT_S` | float, > 0 | `10.0` |" in stream
    encoder = render_block("EncoderSettings")
    assert "| `PROMPTREC_ENCODER_FP16` | bool | `true` |" in encoder
    assert "| `PROMPTREC_ENCODER_MODEL_DIR` | path (optional) | — |" in encoder
    assert "| `PROMPTREC_ENCODER_LEARNING_RATE` | float, > 0 | `0.01` |" in encoder


def test_a_subclass_lists_only_its_own_fields() -> None:
    stream, serving = render_block("StreamSettings"), render_block("ServingSettings")
    assert "`PROMPTREC_HISTORY_LEN`" in serving and "`PROMPTREC_HISTORY_LEN`" not in stream
    assert "`PROMPTREC_BROKER`" in stream and "`PROMPTREC_BROKER`" not in serving
    assert "adds these to **ServingSettings**" in stream
    # Together the two tables cover every field a worker reads, once.
    names = set(own_fields(StreamSettings)) | set(own_fields(ServingSettings))
    assert names == set(StreamSettings.model_fields)
    assert not set(own_fields(StreamSettings)) & set(own_fields(ServingSettings))


def test_every_row_is_one_table_line_per_field() -> None:
    for name in SETTINGS_MODULES:
        rows = [line for line in render_block(name).splitlines() if line.startswith("| `")]
        assert len(rows) == len(own_fields(settings_class(name))), name
        # 4 columns: 5 unescaped pipes per line (a | inside a cell is escaped).
        for row in rows:
            assert row.replace("\\|", "").count("|") == 5, row


def test_markdown_wraps_each_table_in_its_markers() -> None:
    text = settings_markdown(["IndexSettings", "ServingSettings"])
    assert text.startswith("<!-- settings:IndexSettings -->\n**IndexSettings**")
    assert text.count("<!-- /settings -->") == 2
    assert update_blocks(text) == text


def test_update_blocks_regenerates_bodies_and_keeps_the_rest() -> None:
    stale = (
        "# Title\n\nintro\n\n<!-- settings:IndexSettings -->\nold table\n<!-- /settings -->\n"
        "\nafter\n"
    )
    fresh = update_blocks(stale)
    assert fresh.startswith("# Title\n\nintro\n\n<!-- settings:IndexSettings -->\n")
    assert fresh.endswith("<!-- /settings -->\n\nafter\n")
    assert "old table" not in fresh and "`PROMPTREC_INDEX_HNSW_M`" in fresh
    assert update_blocks(fresh) == fresh
    # A changed default is a stale table.
    assert update_blocks(fresh.replace("`32`", "`33`")) == fresh


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no blocks here\n", "no <!-- settings:NAME --> ... <!-- /settings --> block found"),
        ("<!-- settings:IndexSettings -->\nx\n", "line 1: block 'IndexSettings' is never closed"),
        ("a\n<!-- /settings -->\n", "line 2: <!-- /settings --> without an opening block"),
        (
            "<!-- settings:IndexSettings -->\n<!-- settings:EncoderSettings -->\n<!-- /settings -->\n",
            "line 2: block 'EncoderSettings' opens inside block 'IndexSettings' (line 1)",
        ),
        ("<!-- settings:Nope -->\n<!-- /settings -->\n", "line 1: no settings class 'Nope'"),
        (
            "<!-- settings:IndexSettings -->\n<!-- /settings -->\n" * 2,
            "line 3: settings block 'IndexSettings' appears twice",
        ),
    ],
)
def test_broken_marker_blocks_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SettingsDocError) as info:
        update_blocks(text)
    assert message in str(info.value)


def test_undocumented_field_or_type_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    modules = {**SETTINGS_MODULES, "Undocumented": __name__, "Odd": __name__}
    monkeypatch.setattr(settings_doc, "SETTINGS_MODULES", modules)
    with pytest.raises(SettingsDocError, match=r"Undocumented\.size has no description"):
        render_block("Undocumented")
    with pytest.raises(SettingsDocError, match="no documentation name for type"):
        render_block("Odd")
    with pytest.raises(SettingsDocError, match="no settings class 'Missing'"):
        settings_class("Missing")


def test_cli_markdown_check_and_update(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown", "--class", "IndexSettings"]) == 0
    assert capsys.readouterr().out == settings_markdown(["IndexSettings"])
    doc = tmp_path / "README.md"
    doc.write_text("x\n<!-- settings:IndexSettings -->\nstale\n<!-- /settings -->\n")
    assert main(["settings", "--check", str(doc)]) == 1
    assert "out of date (run with --update" in capsys.readouterr().err
    assert main(["settings", "--update", str(doc)]) == 0
    assert f"updated {doc}" in capsys.readouterr().out
    assert doc.read_text() == "x\n" + settings_markdown(["IndexSettings"])
    assert main(["settings", "--check", str(doc)]) == 0
    assert main(["settings", "--update", str(doc)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_bad_input_exits_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain.md"
    plain.write_text("nothing\n")
    assert main(["settings", "--update", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptrec settings: error: no <!-- settings:NAME -->")
    assert plain.read_text() == "nothing\n"  # untouched
    assert main(["settings", "--check", str(tmp_path / "missing.md")]) == 1
    assert "missing.md" in capsys.readouterr().err
    assert main(["settings", "--class", "Nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["settings", "--update", str(plain), "--check", str(plain)]) == 2


def test_cli_prints_effective_settings_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROMPTREC_PARTITIONS", "7")
    monkeypatch.setenv("PROMPTREC_INDEX_KIND", "hnsw")
    monkeypatch.setenv("PROMPTREC_SASL_PASSWORD", "hunter2")
    assert main(["settings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "PROMPTREC_PARTITIONS=7" in lines
    assert "PROMPTREC_INDEX_KIND=hnsw" in lines
    assert "PROMPTREC_HISTORY_LEN=50" in lines
    assert "# PROMPTREC_APP_ID is unset" in lines
    assert "PROMPTREC_SASL_PASSWORD=**********" in lines
    assert not any("hunter2" in line for line in lines)


def test_cli_bad_env_value_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROMPTREC_PARTITIONS", "lots")
    assert main(["settings"]) == 2
    err = capsys.readouterr().err
    assert "PROMPTREC_PARTITIONS" in err and "Traceback" not in err
