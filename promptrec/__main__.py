"""``python -m promptrec`` runs the CLI."""

from __future__ import annotations

from promptrec.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
