"""Errors of the ``promptrec.index`` package."""

from __future__ import annotations

__all__ = ["CandidateIndexError", "DimensionMismatch", "SnapshotError"]


class CandidateIndexError(Exception):
    """Base class of every error raised by ``promptrec.index``."""


class DimensionMismatch(CandidateIndexError):
    """Vectors or queries whose width is not the index's dimension."""


class SnapshotError(CandidateIndexError):
    """A snapshot that cannot be written or restored."""
