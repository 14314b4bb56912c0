"""``make chaos``: the long fault scenarios on the real parts, then the chaos table.

Exit status 1 when any scenario lost or doubled something (docs/reliability.md).
"""

import sys
import tempfile
import time
from pathlib import Path

from tests import support
from tests.chaos import harness


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="intentflow-chaos-"))
    results: list[harness.Result] = []
    with support.running_warehouse(root / "warehouse", root / "warehouse.log") as url:
        scenarios = [
            ("crash", lambda t: harness.worker_crash(url, t, events=5000, kills=6, seconds=40)),
            ("takeover", lambda t: harness.worker_takeover(url, t, events=4000, seconds=25)),
            ("warehouse", lambda t: harness.warehouse_outage(t, events=3000, down_s=15)),
            ("broker", lambda t: harness.broker_outage(url, t, batches=5, down_s=10)),
        ]
        for name, run in scenarios:
            started = time.monotonic()
            result = run(root / name)
            result.notes.append(f"{time.monotonic() - started:.0f}s")
            results.append(result)
            print(harness.table([result]), flush=True)
    print("\n" + harness.table(results))
    print(f"\nlogs: {root}")
    return (
        0 if all(r.lost == 0 and r.duplicates == 0 and r.nudges_twice == 0 for r in results) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
