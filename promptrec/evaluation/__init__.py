"""promptrec.evaluation."""
