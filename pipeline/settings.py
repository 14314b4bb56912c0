"""Settings of the stream worker, read once at the entry point and passed in."""

from schemas.settings import CommonSettings


class WorkerSettings(CommonSettings):
    app_id: str = "intentflow"
    # Replays run under their own namespace: own group, state and output topics.
    namespace: str | None = None
    store: str = "rocksdb://"
    web_port: int = 6066
    # Tansu's group join waits session_timeout/2 (LOCAL_STACK_NOTES.md).
    broker_session_timeout: float = 10.0
    broker_commit_interval: float = 0.5
    # Tansu's ListOffsets is wrong for multi-record batches, which breaks Faust's
    # changelog highwater check on restart (LOCAL_STACK_NOTES.md).
    recovery_consistency_check: bool = False
    batch_size: int = 1000
    batch_within_s: float = 0.05
    # Live, an idle partition's watermark follows the wall clock minus this.
    allowed_lateness_s: float = 5.0
    wall_clock_watermark: bool = True
