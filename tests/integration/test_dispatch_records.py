"""The dispatcher's records on the real store: RocksDB partitions with the changelog on
Tansu (``UserStateStore``, as the dispatcher worker builds it). Prefix scans seek to
their keys; finished records expire out of RocksDB; a rebuild reads the pending index.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from rocksdict import Rdict

from pipeline.dispatch.records import (
    MessageRecord,
    expiry_key,
    message_key,
    record_from_bytes,
    record_to_bytes,
    user_key_of,
)
from pipeline.engine.outputs import KafkaOutputs
from pipeline.engine.state_store import UserStateStore
from pipeline.local.broker import ensure_topics
from schemas.topics import TopicSpec
from tests.integration.test_state_store import PARTITIONS, fake_table
from tests.unit.dispatch.test_send_time import DAY_ZONE, NIGHT_MS, make, nudge, receipts

Body = Callable[[UserStateStore, dict[int, Rdict]], Awaitable[None]]


def on_real_store(broker: str, tmp_path: Path, encode: Callable, decode: Callable, body: Body):
    """Run ``body`` with a UserStateStore over real RocksDB, its changelog on the broker."""
    topic = f"dispatch-state-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker, [TopicSpec(topic, PARTITIONS)]))
    table, dbs = fake_table(tmp_path, topic)

    async def run() -> None:
        outputs = KafkaOutputs([broker])
        try:
            await body(UserStateStore(table, outputs, encode, decode), dbs)
        finally:
            await outputs.stop()

    try:
        asyncio.run(run())
    finally:
        for db in dbs.values():
            db.close()


def test_a_prefix_scan_merges_unflushed_writes_in_key_order(broker: str, tmp_path: Path):
    async def body(store: UserStateStore, dbs: dict[int, Rdict]) -> None:
        for key in ("a:1", "x:03", "x:01", "x:05", "y:1"):
            store.put(key, 1, key.upper())
        await store.flush()
        store._cache.clear()  # read RocksDB, not the cache
        store.put("x:02", 1, "unflushed")
        store.put("x:09", 1, "unflushed, last")
        store.delete("x:03", 1)
        store.put("x:05", 1, "rewritten")
        assert list(store.scan_prefix(1, "x:")) == [
            ("x:01", "X:01"),
            ("x:02", "unflushed"),
            ("x:05", "rewritten"),
            ("x:09", "unflushed, last"),
        ]
        assert list(store.scan_prefix(2, "x:")) == []
        await store.flush()
        store._cache.clear()
        assert [k for k, _ in store.scan_prefix(1, "x:")] == ["x:01", "x:02", "x:05", "x:09"]
        # The engine's full scan is unchanged.
        assert {k for k, _ in store.scan(1)} == {"a:1", "x:01", "x:02", "x:05", "x:09", "y:1"}

    on_real_store(broker, tmp_path, str.encode, bytes.decode, body)


def test_finished_records_leave_rocksdb_and_a_rebuild_reads_the_pending_index(
    broker: str, tmp_path: Path
):
    async def body(store: UserStateStore, dbs: dict[int, Rdict]) -> None:
        d, _, _ = make(record_retention_s=60)
        d.store = store
        d.rebuild(0, NIGHT_MS)
        for n in range(1, 21):
            decision = nudge(n, timezone=DAY_ZONE, user_key=f"u{n}")
            await d.on_decisions([(0, decision.to_json())], NIGHT_MS)
        await d.tick(NIGHT_MS + 31_000)  # delivery timeouts: SMS, finished
        night = nudge(99, user_key="night-owl")  # UTC night: held
        await d.on_decisions([(0, night.to_json())], NIGHT_MS + 31_000)
        receipts(d)
        await store.flush()
        assert sum(1 for k, _ in dbs[0].items() if k.startswith(b"m:")) == 21

        # A new dispatcher on the same RocksDB finds the one pending message.
        fresh, _, _ = make(record_retention_s=60)
        fresh.store = store
        store._cache.clear()
        assert fresh.rebuild(0, NIGHT_MS + 32_000) == 1
        # Finished ones are kept until their decision is too old to send (16 h).
        await fresh.tick(NIGHT_MS + 16 * 3_600_000 + 1_000)
        await store.flush()
        keys = sorted(k.decode() for k, _ in dbs[0].items() if not k.startswith(b"__faust"))
        # The held one was looked at by then (stale at its release): kept its retention.
        held = message_key(f"{99:032x}")
        assert [k for k in keys if k.startswith("m:")] == [held]
        # Users sent to within the day keep their record (the daily cap), ids gone.
        users = [k for k in keys if k.startswith("u:")]
        assert len(users) == 21 and user_key_of("night-owl") in users
        assert store.get(user_key_of("u1"), 0).messages == []
        record = store.get(held, 0)
        assert isinstance(record, MessageRecord) and record.outcome == "expired"
        assert [k for k in keys if k.startswith("x:")] == [
            expiry_key(record.expires_ms, record.message_id)
        ]
        assert not any(k.startswith("p:") for k in keys)

    on_real_store(broker, tmp_path, record_to_bytes, record_from_bytes, body)
