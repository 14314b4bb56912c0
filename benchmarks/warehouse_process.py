"""A throw-away local warehouse for benchmarks: its own data path and port, stopped after."""

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.local.ports import LOOPBACK, free_port
from pipeline.local.processes import ManagedProcess
from pipeline.local.readiness import http_get
from pipeline.warehouse.migrate import migrate_database

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def migrated_warehouse(database: str = "bench") -> Iterator[str]:
    """Yields the URL of a fresh warehouse whose ``database`` has every migration applied."""
    with tempfile.TemporaryDirectory(prefix="intentflow-bench-") as tmp:
        port = free_port()
        process = ManagedProcess(
            "warehouse",
            [
                *(sys.executable, "-m", "pipeline.local.warehouse"),
                *("--data-path", f"{tmp}/data", "--host", LOOPBACK, "--port", str(port)),
                *("--log-level", "warning"),
            ],
            Path(tmp) / "warehouse.log",
            cwd=PROJECT_ROOT,
        )
        process.start()
        url = f"http://{LOOPBACK}:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                response = http_get(f"{url}/ping")
                if response is not None and response.status_code == 200:
                    break
                if time.monotonic() > deadline or not process.is_running():
                    raise RuntimeError(f"warehouse did not start:\n{process.log_tail()}")
                time.sleep(0.1)
            migrate_database(url, database)
            yield url
        finally:
            process.stop(15)
