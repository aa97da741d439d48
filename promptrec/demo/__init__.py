"""``promptrec demo``: embedded broker + one worker + the bundled sample stream."""

from __future__ import annotations

__all__: list[str] = []
