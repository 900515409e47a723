"""The timing helper shared by the benchmarks. Not part of the library API."""

import time
from collections.abc import Callable

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""``--clock`` choices: wall time, or process CPU time (which other jobs sharing the cores do not inflate; with one
thread it is one core's time)."""


def best_time(fn: Callable[[], object], repeats: int, *, clock: Callable[[], float] = time.perf_counter) -> float:
    """The best time by ``clock`` (default: wall time) of ``repeats`` calls of ``fn`` after one warm-up call (the
    least disturbed by a shared machine)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best
