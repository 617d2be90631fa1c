"""Progress of long work: a bar on a terminal, a plain line every few seconds elsewhere (CI logs, Pulumi's log).

CI logs keep every byte, so they get no bar's escape codes: a job log shows one line per interval instead.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

Log = Callable[[str], None]


class Meter(Protocol):
    def update(self, done: int, detail: str = "") -> None: ...

    def close(self) -> None: ...


def on_terminal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Whether a bar can be drawn: a terminal that is not dumb, and not a CI job (whose log keeps every redraw)."""
    return stream.isatty() and env.get("TERM", "") != "dumb" and not env.get("CI")


class Lines:
    """One line at most every `interval` seconds: `<title>: <done>[ of <total>] <unit>[, detail], <elapsed> s`."""

    def __init__(self, log: Log, title: str, unit: str, total: int | None, *, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._log, self._title, self._unit, self._total = log, title, unit, total
        self._interval, self._clock = interval, clock
        self._start = self._last = clock()

    def update(self, done: int, detail: str = "") -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        of = f" of {self._total:,}" if self._total is not None else ""
        self._log(f"{self._title}: {done:,}{of} {self._unit}{f', {detail}' if detail else ''}, {now - self._start:.0f} s")

    def close(self) -> None:
        pass


class Bar:
    """A rich progress bar on stderr, gone when the work ends (the summary line that follows says what was done)."""

    def __init__(self, title: str, unit: str, total: int | None, stream: TextIO = sys.stderr):
        from rich.console import Console  # only where a bar is drawn: the command line starts faster without it
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn(unit + " {task.fields[detail]}"), TimeElapsedColumn(),
                                  console=Console(file=stream), transient=True)
        self._task = self._progress.add_task(title, total=total, detail="")
        self._progress.start()

    def update(self, done: int, detail: str = "") -> None:
        self._progress.update(self._task, completed=done, detail=detail)

    def close(self) -> None:
        self._progress.stop()


class Silent:
    def update(self, done: int, detail: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def meter(log: Log | None, title: str, unit: str, total: int | None, *, bar: bool) -> Meter:
    """A bar (`bar`: stderr is a terminal and `log` prints there), else lines through `log`, else nothing."""
    if log is None:
        return Silent()
    return Bar(title, unit, total) if bar else Lines(log, title, unit, total)


def stderr_is_terminal() -> bool:
    return on_terminal(sys.stderr, os.environ)
