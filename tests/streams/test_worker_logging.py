"""The worker keeps faust's debug logging off at WARN (no terminal spinner forcing DEBUG)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from promptrec.streams.worker import without_spinner


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was (faust's worker reconfigures it)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _debug_enabled(worker: faust.Worker) -> bool:
    worker._setup_logging()
    return logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("restore_logging")
def test_warn_worker_without_spinner_does_not_log_debug() -> None:
    app = faust.App("promptrec-test-logging", broker="kafka://127.0.0.1:1")
    worker = without_spinner(faust.Worker(app, loglevel="warn", quiet=True))
    assert not _debug_enabled(worker)
    assert logging.getLogger().level == logging.WARNING


@pytest.mark.usefixtures("restore_logging")
def test_faust_spinner_would_enable_debug() -> None:
    """What :func:`without_spinner` prevents: faust sets the root logger to DEBUG at WARN."""
    app = faust.App("promptrec-test-logging-spin", broker="kafka://127.0.0.1:1")
    worker = faust.Worker(app, loglevel="warn", quiet=True)
    assert _debug_enabled(worker)
