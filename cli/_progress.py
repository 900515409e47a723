"""Progress on stderr: a bar on a terminal; in a log (a batch job, a cluster's output file), where a bar prints
nothing but its label, a one-line record every ``PERIOD_S`` seconds and at the end:

    generating: 1200/5000 updates (24%), 35.2 updates/s, elapsed 34s, ETA 1m48s, 110 records written, acceptance 0.912
"""

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

import click

from lgdiff import _dist

PERIOD_S = 30.0
"""Seconds between two progress records in a log."""


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class LogProgress:
    """Counts work done and writes a progress record at most every ``period_s`` seconds (and at the end, with
    `finish`): done/total, rate, elapsed time, ETA, and ``status()`` (e.g. records written and acceptance) where
    it returns text. ``clock`` is injectable for tests."""

    def __init__(self, length: int, label: str, *, unit: str, file: TextIO, period_s: float = PERIOD_S,
                 status: Callable[[], str | None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.length, self.label, self.unit, self.file = length, label, unit, file
        self.period_s, self.status, self.clock = period_s, status, clock
        self.done = 0
        self.start = self.last = clock()

    def update(self, steps: int) -> None:
        self.done += steps
        now = self.clock()
        if now - self.last >= self.period_s:
            self.write(now)

    def finish(self) -> None:
        self.write(self.clock())

    def line(self, now: float) -> str:
        elapsed = now - self.start
        parts = [f"{self.label}: {self.done}/{self.length} {self.unit}"
                 + (f" ({100 * self.done / self.length:.0f}%)" if self.length else "")]
        if elapsed > 0 and self.done > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.0f} {self.unit}/s" if rate >= 100 else f"{rate:.3g} {self.unit}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if 0 < self.done < self.length:
            parts.append(f"ETA {format_duration((self.length - self.done) * elapsed / self.done)}")
        status = self.status() if self.status is not None else None
        if status:
            parts.append(status)
        return ", ".join(parts)

    def write(self, now: float) -> None:
        self.last = now
        print(self.line(now), file=self.file, flush=True)


@contextlib.contextmanager
def progress(length: int, label: str, *, unit: str = "steps",
             status: Callable[[], str | None] | None = None) -> Iterator[Callable[[int], None]]:
    """Yield the ``update(steps)`` callable of a progress display on stderr: a bar when stderr is a terminal, else
    `LogProgress` records. Rank 0 only: the other ranks of a torchrun launch stay silent."""
    if not _dist.is_main():
        yield lambda steps: None
        return
    if sys.stderr.isatty():
        with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    log = LogProgress(length, label, unit=unit, file=sys.stderr, status=status)
    yield log.update
    log.finish()


__all__ = ["PERIOD_S", "LogProgress", "format_duration", "progress"]
