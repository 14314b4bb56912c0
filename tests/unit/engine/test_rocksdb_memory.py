"""A worker's RocksDB memory stays within ``state_memory_mb`` however many partitions it
owns and however much it writes (pipeline/engine/rocksdb_memory.py).

With Faust's own options each partition database fills its own 64 MB memtables: the
14-minute soak's worker grew ~13 MB a minute, while the states its traffic builds come
to ~3.5 MB (docs/reliability.md, "Soak"). Each
case runs in a fresh process (resident memory is the process's), opens the
``user-state`` table's partitions through the app the worker builds, and writes states
the way the write-behind store does: one ``WriteBatch`` per partition per flush.
"""

import json
import subprocess
import sys

import pytest

from tests import support

PARTITIONS = 8
WRITTEN_MB = 320
# Python, the libraries and the app take some memory of their own as the writes begin.
SLACK_MB = 40

CHILD = """
import json, os, random, sys
from pathlib import Path
from rocksdict import WriteBatch
from pipeline.app import create_app
from pipeline.engine.rocksdb_memory import shared_memory
from pipeline.settings import WorkerSettings

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

data_dir, memory_mb, partitions, written_mb = sys.argv[1], *map(int, sys.argv[2:])
settings = WorkerSettings(
    data_dir=data_dir, state_memory_mb=memory_mb, user_partitions=partitions, web_enabled=False
)
table = create_app(settings).tables["user-state"]
dbs = [table.data._db_for_partition(p) for p in range(partitions)]
rng = random.Random(7)
keys = [f"user-{i}".encode() for i in range(5000)]
values = [os.urandom(650) for _ in range(64)]
start, peak, written = rss_mb(), 0.0, 0
while written < written_mb << 20:
    for db in dbs:
        batch = WriteBatch(raw_mode=True)
        for _ in range(100):
            value = values[rng.randrange(64)]
            batch.put(keys[rng.randrange(5000)], value)
            written += len(value)
        db.write(batch)
    peak = max(peak, rss_mb() - start)
memory = shared_memory(settings.state_memory_bytes)
print(json.dumps({
    "growth_mb": peak,
    "memtables_mb": memory.write_buffers.get_usage() / 2**20,
    "cache_mb": memory.cache.get_usage() / 2**20,
}))
"""


def grow(tmp_path, memory_mb: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path),
            str(memory_mb),
            str(PARTITIONS),
            str(WRITTEN_MB),
        ],
        env=support.child_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("memory_mb", [16, 64])
def test_writes_stay_within_the_process_budget(tmp_path, memory_mb):
    grown = grow(tmp_path, memory_mb)
    # Faust's defaults held every byte written here in memtables (8 × 64 MB > 320 MB).
    assert grown["growth_mb"] < memory_mb + SLACK_MB, grown
    # The memtables are charged to the one cache, which counts them. Their share is a
    # soft limit (past it a flush starts; writers are never stalled), so a burst can
    # overshoot it while the flushes catch up.
    assert 0 < grown["memtables_mb"] <= grown["cache_mb"], grown
