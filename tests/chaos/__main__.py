"""``make chaos``: the long fault scenarios on the real parts, then the chaos table.

Exit status 1 when any scenario lost or doubled something, decided differently from
the fault-free run, or left a traceback in a worker log (docs/reliability.md).

Sizes: the worker folds ~7,000 events/s on a 2-core machine and a restart after a
kill takes 10–25 s (start, group join, changelog recovery), so traffic is paced
slower than that and every wait is generous; a wait ends as soon as all is stored.
"""

import sys
import tempfile
import time
from pathlib import Path

from tests import support
from tests.chaos import harness


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="intentflow-chaos-"))
    started_all = time.monotonic()
    results: list[harness.Result] = []
    with support.running_warehouse(root / "warehouse", root / "warehouse.log") as url:
        scenarios = [
            (
                "crash",
                lambda t: harness.worker_crash(
                    url, t, events=200_000, kills=6, seconds=240, settle_s=900
                ),
            ),
            (
                "wall clock",
                lambda t: harness.crash_with_wall_clock(
                    url, t, events=40_000, kills=4, seconds=60, settle_s=600
                ),
            ),
            (
                "takeover",
                lambda t: harness.worker_takeover(url, t, events=40_000, seconds=40, settle_s=600),
            ),
            (
                "warehouse",
                lambda t: harness.warehouse_outage(
                    t, events=30_000, down_s=30, seconds=10, settle_s=600
                ),
            ),
            ("broker", lambda t: harness.broker_outage(url, t, batches=20, down_s=20)),
        ]
        for name, run in scenarios:
            started = time.monotonic()
            result = run(root / name)
            result.notes.append(f"{time.monotonic() - started:.0f}s")
            results.append(result)
            print(harness.table([result]), flush=True)
    print("\n" + harness.table(results))
    print(f"\ntotal: {time.monotonic() - started_all:.0f}s")
    print(f"logs: {root}")
    sound = all(r.ok and not any("tracebacks" in n for n in r.notes) for r in results)
    return 0 if sound else 1


if __name__ == "__main__":
    sys.exit(main())
