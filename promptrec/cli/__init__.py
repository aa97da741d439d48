"""The ``promptrec`` command line (``promptrec --help``)."""

from __future__ import annotations

from promptrec.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
