"""promptrec.serving."""
