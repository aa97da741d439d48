"""Benchmarks of promptrec (`promptrec bench ...`); peers' drivers live in bench/peers/."""
