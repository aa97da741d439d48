"""Fixtures of the deploy tests: Prometheus binaries, the deploy/ folder, the worker's settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from promptrec.encoder.settings import EncoderSettings
from promptrec.index.settings import IndexSettings
from promptrec.streams.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

_MISSING = (
    "{name} not found: it comes with Debian's `prometheus` package, which `make test` installs "
    "(`make prometheus`, i.e. `apt-get install -y prometheus` as root). Install it to run this test."
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(_MISSING.format(name=name))
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Path of the ``prometheus`` server binary (skips with instructions when missing)."""
    return _binary("prometheus")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    """Path of ``promtool`` (skips with instructions when missing)."""
    return _binary("promtool")


SETTINGS_CLASSES = (StreamSettings, EncoderSettings, IndexSettings)


def setting_env_names() -> set[str]:
    """Every environment variable a worker reads (``PROMPTREC_...``)."""
    return {
        f"{cls.model_config['env_prefix']}{name.upper()}"
        for cls in SETTINGS_CLASSES
        for name in cls.model_fields
    }


@pytest.fixture
def load_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Mapping[str, str]], tuple[StreamSettings, EncoderSettings, IndexSettings]]:
    """Build the worker's three settings objects from exactly the given environment."""

    def load(env: Mapping[str, str]) -> tuple[StreamSettings, EncoderSettings, IndexSettings]:
        for key in list(os.environ):
            if key.startswith("PROMPTREC_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        return StreamSettings(), EncoderSettings(), IndexSettings()

    return load
