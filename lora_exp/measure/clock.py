"""The process clock: how long this process has run, without importing anything heavy.

`run_cell.main` reads it first thing (the time spent on imports and config composition) and last
(the run's whole wall time); the phases in between are timed by `phases.py`.
"""

from __future__ import annotations

import os
import time


def process_age_s() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere from this import)."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5): starttime, in clock ticks since boot
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED_AT


_IMPORTED_AT = time.perf_counter()


def timing_record(phases: dict[str, float]) -> dict[str, float]:
    """`{"timing/<phase>": seconds}`, rounded to milliseconds."""
    return {f"timing/{name}": round(float(value), 3) for name, value in phases.items()}
