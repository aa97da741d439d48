"""Shared fixtures: one embedded broker per test session, unique topic prefixes and groups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from promptrec.broker.embedded import EmbeddedBroker
from promptrec.streams.settings import StreamSettings

# Encoder fixtures (the real MiniLM, a tiny random BERT) are shared by every package's tests.
pytest_plugins = ["tests.encoder.fixtures", "tests.pipeline_fixtures"]


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A running embedded broker on a free port, shared by the whole session."""
    embedded = EmbeddedBroker()
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def topic_prefix() -> Callable[[], str]:
    """Factory of unique topic prefixes (``t<10 hex>.``): tests never see each other's topics."""
    return lambda: f"t{uuid4().hex[:10]}."


@pytest.fixture
def group_id() -> Callable[[], str]:
    """Factory of unique consumer-group ids."""
    return lambda: f"g{uuid4().hex[:10]}"


@pytest.fixture
def make_settings(
    broker: EmbeddedBroker, topic_prefix: Callable[[], str], tmp_path: Path
) -> Callable[..., StreamSettings]:
    """Factory of StreamSettings bound to the session broker and one prefix per test.

    Defaults: ``metrics_port=0`` (no endpoint), ``state_dir=tmp_path``; keyword overrides win.
    """
    prefix = topic_prefix()

    def make(**overrides: Any) -> StreamSettings:
        values: dict[str, Any] = {
            "broker": broker.url,
            "topic_prefix": prefix,
            "metrics_port": 0,
            "state_dir": tmp_path,
        }
        values.update(overrides)
        return StreamSettings(**values)

    return make
