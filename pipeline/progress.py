"""Progress of long CLI work (export, replay, simulate, migrate): a bar with rate and ETA.

Drawn with rich on a terminal only; where stderr is not a terminal (a pipe, a log
file, CI) nothing is drawn, so logs stay clean. The bar goes when the work ends:
each command prints its own summary after it.
"""

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, in the work's own unit."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed or 0:,.0f} {self.unit}/s", style="progress.data.speed")


class Progress:
    """``advance(n)`` as work is done; ``close()`` at the end, also on failure.

    ``total``: the work's size when known up front. ``fraction``: for work whose
    size is only known as a share done (a topic scan, a file read): the bar's total
    is then estimated from it at each draw.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        fraction: Callable[[], float | None] = lambda: None,
        unit: str = "events",
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.fraction = fraction
        self.done = 0
        self._started = time.monotonic()
        stream = stream or sys.stderr
        self._bar: RichProgress | None = None
        if stream.isatty():
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(unit),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    @property
    def drawn(self) -> bool:
        return self._bar is not None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is None:
            return
        share = self.fraction()
        if share is not None and 0 < share < 1:
            self._bar.update(self._task, total=max(self.done, round(self.done / share)))
        self._bar.update(self._task, completed=self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
