"""``promptrec`` subcommands for bench (registered by :mod:`promptrec.streams.cli`)."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add this module's subcommands to the ``promptrec`` parser's subparsers."""
    del sub  # commands are added as they are built


