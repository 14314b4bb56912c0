"""A progress line for long replays and exports: events done, events/s, ETA.

Drawn on a terminal only (rewritten in place with ``\\r``, at most a few times a
second); silent when the stream is not a tty, so logs and CI stay clean.
"""

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        label: str,
        fraction: Callable[[], float | None] = lambda: None,
        stream: TextIO | None = None,
        interval_s: float = 0.25,
    ) -> None:
        self.label = label
        self.fraction = fraction
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty()
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self.done = 0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, events: int) -> None:
        self.done += events
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._drawn_at >= self._interval_s:
            self._drawn_at = now
            self._draw()

    def _draw(self) -> None:
        line = f"{self.label}: {self.done:,} events, {self.rate:,.0f} events/s"
        fraction = self.fraction()
        if fraction is not None and 0 < fraction < 1:
            eta = self.elapsed_s * (1 - fraction) / fraction
            line += f", {fraction:.0%}, ETA {eta:,.0f} s"
        self._stream.write("\r" + line.ljust(78)[:120])
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._stream.write("\r" + " " * 78 + "\r")
            self._stream.flush()
