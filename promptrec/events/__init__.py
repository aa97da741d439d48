"""Event records: the typed records of every topic with their JSON schemas, decoding limits, and
the closed set of reasons an event is dead-lettered for. Imports no other promptrec package."""

from __future__ import annotations

__all__: list[str] = []
