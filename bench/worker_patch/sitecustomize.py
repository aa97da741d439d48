"""Bench-only: try bench/faust_floor.py's candidate fixes on the real worker, without editing it.

Put this folder first on the worker's ``PYTHONPATH`` and switch fixes on by environment::

    promptrec bench pipeline ... --worker-env PYTHONPATH=$PWD/bench/worker_patch:$PWD \
        --worker-env PERF_FAST_DRAIN=1 --worker-env PERF_SENSORS_OFF=1

Python imports ``sitecustomize`` at start-up, before promptrec; nothing happens without the
variables. ``PERF_FAST_DRAIN``: :func:`promptrec.streams.faust_fast.install_fast_handoff`;
``PERF_SENSORS_OFF``: every Faust app gets :func:`promptrec.streams.faust_fast.sensors_off` right
after it is built (both are the worker's default now, ``PROMPTREC_FAUST_FAST_PATH``; these switch
them on where that setting is false).
``PERF_GC_TIMES=DIR``: every garbage collection is timed (wall seconds, per generation) and the
totals are written to ``DIR/gc-<pid>.json`` every 5 s, with the process CPU time (copy the file
when a run starts and when it ends).
"""

from __future__ import annotations

import os
from typing import Any

__all__: list[str] = []

if os.environ.get("PERF_FAST_DRAIN"):
    from promptrec.streams.faust_fast import install_fast_handoff

    install_fast_handoff(True)

if os.environ.get("PERF_SENSORS_OFF"):
    import faust.app.base as _base

    _original_init = _base.App.__init__

    def _init(self: Any, *args: Any, **kwargs: Any) -> None:
        _original_init(self, *args, **kwargs)
        from promptrec.streams.faust_fast import sensors_off

        sensors_off(self)

    _base.App.__init__ = _init  # type: ignore[method-assign]

if os.environ.get("PERF_GC_TIMES"):
    import gc
    import json
    import threading
    import time
    from pathlib import Path

    _gc_out = Path(os.environ["PERF_GC_TIMES"]) / f"gc-{os.getpid()}.json"
    _gc_totals = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}  # generation -> [count, wall s]
    _gc_start = [0.0]

    def _gc_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _gc_start[0] = time.perf_counter()
        else:
            entry = _gc_totals[info["generation"]]
            entry[0] += 1
            entry[1] += time.perf_counter() - _gc_start[0]

    def _gc_dump() -> None:
        while True:
            time.sleep(5)
            doc = {"gc": _gc_totals, "cpu_s": time.process_time(), "time": time.time()}
            _gc_out.write_text(json.dumps(doc))

    gc.callbacks.append(_gc_timer)
    threading.Thread(target=_gc_dump, daemon=True, name="perf-gc-times").start()
