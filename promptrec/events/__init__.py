"""promptrec.events."""
