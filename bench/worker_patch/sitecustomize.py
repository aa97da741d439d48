"""Bench-only: try bench/faust_floor.py's candidate fixes on the real worker, without editing it.

Put this folder first on the worker's ``PYTHONPATH`` and switch fixes on by environment::

    promptrec bench pipeline ... --worker-env PYTHONPATH=$PWD/bench/worker_patch:$PWD \
        --worker-env PERF_FAST_DRAIN=1 --worker-env PERF_SENSORS_OFF=1

Python imports ``sitecustomize`` at start-up, before promptrec; nothing happens without the
variables. ``PERF_FAST_DRAIN``: :func:`bench.faust_floor._fast_drain`; ``PERF_SENSORS_OFF``: every
Faust app gets :func:`bench.faust_floor._sensors_off` right after it is built.
"""

from __future__ import annotations

import os
from typing import Any

__all__: list[str] = []

if os.environ.get("PERF_FAST_DRAIN"):
    from bench.faust_floor import _fast_drain

    _fast_drain()

if os.environ.get("PERF_SENSORS_OFF"):
    import faust.app.base as _base

    _original_init = _base.App.__init__

    def _init(self: Any, *args: Any, **kwargs: Any) -> None:
        _original_init(self, *args, **kwargs)
        from bench.faust_floor import _sensors_off

        _sensors_off(self)

    _base.App.__init__ = _init  # type: ignore[method-assign]
