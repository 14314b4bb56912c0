"""Child processes in their own process group, logging to a file, stopped and reaped for sure."""

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Tansu colours its log lines; tails shown to people should not carry escape codes.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ProcessError(RuntimeError):
    """A part of the local stack could not start or died; the message names the part."""


class ManagedProcess:
    """One child process: own session (so its whole tree can be signalled), output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from exc

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._popen.pid

    @property
    def started(self) -> bool:
        return self._popen is not None

    def returncode(self) -> int | None:
        """None while running; the exit status once it has exited (and is reaped)."""
        return None if self._popen is None else self._popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_bytes()[-16_384:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        text = _ANSI.sub("", text)
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout_s``; reap. Safe to call twice."""
        if self._popen is None:
            return None
        if self._popen.poll() is not None:
            # Reaped earlier: its process group id may since belong to someone else.
            return self._popen.returncode
        self.terminate()
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        # The leader is gone; children it spawned into its group must not linger.
        self._signal_group(signal.SIGKILL)
        return self._popen.returncode

    def terminate(self) -> None:
        """Ask the whole process group to stop (SIGTERM) without waiting."""
        if self.is_running():
            self._signal_group(signal.SIGTERM)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)


def stop_all(processes: Sequence[ManagedProcess], timeout_s: float) -> None:
    """Signal every process first, then wait, so shutdowns overlap rather than queue."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in processes:
        process.stop(max(0.1, deadline - time.monotonic()))
