"""Settings of the stream worker, read once at the entry point and passed in."""

from typing import Any

from pydantic import Field

from schemas.settings import CommonSettings
from schemas.topics import TELEMETRY_RAW


class WorkerSettings(CommonSettings):
    # Replays run under their own namespace: own group, state and output topics.
    namespace: str | None = None
    # The telemetry the engine reads; a replay or a test points it elsewhere.
    source_topic: str = TELEMETRY_RAW.name
    store: str = "rocksdb://"
    # RocksDB's block cache and memtables, shared by every table partition of the
    # process (pipeline/engine/rocksdb_memory.py); the memtables take at most half.
    state_memory_mb: int = Field(default=64, ge=8)
    # Workers sharing a machine (the local stack) each need their own state directory.
    worker_index: int = 0
    web_enabled: bool = True
    web_port: int = 6066
    # How other workers and the API reach this one (Faust's canonical URL host);
    # None: the machine's host name.
    web_host: str | None = None
    log_level: str = "info"
    # Tansu's group join waits session_timeout/2 (docs/local-stack.md).
    broker_session_timeout: float = 10.0
    broker_commit_interval: float = 0.5
    # Tansu's ListOffsets is wrong for multi-record batches, which breaks Faust's
    # changelog highwater check on restart (docs/local-stack.md).
    recovery_consistency_check: bool = False
    batch_size: int = 1000
    # A batch is taken while the step before it runs (pipeline/engine/batched.py): it is
    # handed over when full, batch_within_s after it opened, or once caught up: no record
    # for batch_idle_s and every partition in it read to the consumer's last fetched end.
    batch_within_s: float = 0.02
    batch_idle_s: float = Field(default=0.001, gt=0)
    # Tansu does not answer a waiting fetch when records arrive (pipeline/faust_transport.py).
    consumer_fetch_max_wait_ms: int = 10
    # Live, a partition idle and caught up for watermark_idle_s gets a watermark record
    # of the wall clock minus the allowed lateness (schemas/engine_records.py), checked
    # every watermark_interval_s; while it catches up only event time moves it.
    allowed_lateness_s: float = 5.0
    wall_clock_watermark: bool = True
    watermark_idle_s: float = 1.0
    watermark_interval_s: float = 0.5

    @property
    def batching(self) -> dict[str, Any]:
        """How every batched agent of a worker takes its batches (``BatchedAgents.run``)."""
        return {
            "batch_size": self.batch_size,
            "within_s": self.batch_within_s,
            "idle_s": self.batch_idle_s,
        }

    @property
    def state_memory_bytes(self) -> int:
        return self.state_memory_mb << 20
