"""promptrec.demo."""
