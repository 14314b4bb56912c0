"""The write-behind state store on Tansu and a real RocksDB: changelog first, then RocksDB
with Faust's persisted changelog offset in the same write (pipeline/engine/state_store.py).

Without the offset a restarted worker's recovery replayed the changelog from a stale
offset and, on Tansu's short end offsets, stopped before the newest records: states
went back while their events' offsets were committed (found by ``make chaos``).
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from rocksdict import Options, Rdict

from pipeline.engine.outputs import KafkaOutputs
from pipeline.engine.state_store import FAUST_OFFSET_KEY, UserStateStore
from pipeline.local.broker import ensure_topics
from schemas.topics import TopicSpec

PARTITIONS = 4


def fake_table(tmp_path: Path, topic: str) -> tuple[SimpleNamespace, dict[int, Rdict]]:
    """What UserStateStore uses of a Faust table: its RocksDB partitions and changelog name."""
    dbs = {p: Rdict(str(tmp_path / f"p{p}"), Options(raw_mode=True)) for p in range(PARTITIONS)}
    table = SimpleNamespace(
        data=SimpleNamespace(_db_for_partition=dbs.__getitem__),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: topic),
    )
    return table, dbs


def over_kafka(broker: str, dbs: dict[int, Rdict], body: Callable[[KafkaOutputs], Awaitable]):
    """Run ``body`` with outputs to the broker, then close the databases whatever happens."""

    async def run() -> None:
        outputs = KafkaOutputs([broker])
        try:
            await body(outputs)
        finally:
            await outputs.stop()

    try:
        asyncio.run(run())
    finally:
        for db in dbs.values():
            db.close()


def store_over(table: SimpleNamespace, outputs: object) -> UserStateStore[str]:
    return UserStateStore(table, outputs, str.encode, bytes.decode)  # type: ignore[arg-type]


def test_flush_persists_the_last_changelog_offset_of_each_partition(broker: str, tmp_path: Path):
    topic = f"state-store-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker, [TopicSpec(topic, PARTITIONS)]))
    table, dbs = fake_table(tmp_path, topic)

    async def run(outputs: KafkaOutputs) -> None:
        store = store_over(table, outputs)
        for n in range(5):
            store.put(f"a{n}", 1, f"first-{n}")
        store.put("b", 2, "first")
        await store.flush()
        assert dbs[1][FAUST_OFFSET_KEY] == b"4"
        assert dbs[2][FAUST_OFFSET_KEY] == b"0"
        assert FAUST_OFFSET_KEY not in dbs[0]
        for n in range(3):
            store.put(f"a{n}", 1, f"second-{n}")
        store.delete("a4", 1)
        await store.flush()
        assert dbs[1][FAUST_OFFSET_KEY] == b"8"
        assert dbs[1][b"a0"] == b"second-0"
        assert dbs[1][b"a3"] == b"first-3"
        assert b"a4" not in dbs[1]
        assert dbs[2][FAUST_OFFSET_KEY] == b"0"

    over_kafka(broker, dbs, run)


def test_rocksdb_is_never_ahead_of_the_changelog(tmp_path: Path):
    class Unreachable:
        async def send_all(self, records: list) -> dict:
            raise ConnectionError("broker down")

    table, dbs = fake_table(tmp_path, "changelog")
    store = store_over(table, Unreachable())
    store.put("a", 1, "state")
    try:
        with pytest.raises(ConnectionError):
            asyncio.run(store.flush())
        assert b"a" not in dbs[1] and FAUST_OFFSET_KEY not in dbs[1]
    finally:
        for db in dbs.values():
            db.close()


def test_idle_states_wait_encoded_and_a_fold_during_a_flush_is_kept(broker: str, tmp_path: Path):
    topic = f"state-store-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker, [TopicSpec(topic, PARTITIONS)]))
    table, dbs = fake_table(tmp_path, topic)
    decoded: list[bytes] = []

    def decode(raw: bytes) -> str:
        decoded.append(raw)
        return raw.decode()

    async def run(outputs: KafkaOutputs) -> None:
        store = UserStateStore(table, outputs, str.encode, decode, idle_flushes=1)  # type: ignore[arg-type]
        store.put("a", 1, "first")
        store.put("b", 1, "first")
        await store.flush()
        store.put("c", 1, "first")
        await store.flush()
        # c was written by the last flush: still decoded. a and b sat out a flush.
        assert store.get("c", 1) == "first"
        assert decoded == []
        assert store.get("a", 1) == "first"
        assert store.get("a", 1) == "first"
        assert decoded == [b"first"]  # decoded once, then kept decoded
        store.put("a", 1, "second")
        flushing = asyncio.create_task(store.flush())
        await asyncio.sleep(0)  # yield: the flush encodes its snapshot, then awaits Kafka
        assert not flushing.done()
        assert store.get("b", 1) == "first"
        store.put("b", 1, "during")
        await flushing
        assert store.get("b", 1) == "during"
        await store.flush()
        assert dbs[1][b"a"] == b"second"
        assert dbs[1][b"b"] == b"during"
        assert dict(store.scan(1)) == {"a": "second", "b": "during", "c": "first"}

    over_kafka(broker, dbs, run)
