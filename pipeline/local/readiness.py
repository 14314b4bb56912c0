"""Waiting for a part to answer, while watching that its process is still alive."""

import time
from collections.abc import Callable

import httpx

from pipeline.local.processes import ManagedProcess, ProcessError


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived while the stack was still starting."""


def http_get(url: str, timeout_s: float = 2.0) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError:
        return None


def wait_until(
    ready: Callable[[], bool],
    watched: list[ManagedProcess],
    deadline: float,
    what: str | Callable[[], str],
    stop_requested: Callable[[], bool] = lambda: False,
    interval_s: float = 0.2,
) -> None:
    """Poll ``ready`` until it is true; raise naming the part that died or timed out."""
    while True:
        if stop_requested():
            raise StopRequested
        for process in watched:
            status = process.returncode()
            if status is not None:
                raise ProcessError(exited_message(process, status))
        if ready():
            return
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise ProcessError(f"{described}: not ready in time")
        time.sleep(interval_s)


def exited_message(process: ManagedProcess, status: int) -> str:
    """One line naming the part, its exit status and the last line it logged."""
    last_lines = process.log_tail(lines=3).splitlines()
    reason = last_lines[-1].strip() if last_lines else "no output"
    return f"{process.name}: exited with status {status}: {reason} (log: {process.log_path})"
