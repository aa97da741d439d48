"""promptrec.observability."""
