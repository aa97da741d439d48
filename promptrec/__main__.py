"""``python -m promptrec`` runs the CLI."""

from __future__ import annotations

from promptrec.streams.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
