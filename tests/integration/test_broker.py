"""The broker and a Faust worker with a RocksDB table, on a real Tansu."""

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.local.broker import Broker, BrokerError, ensure_topics
from schemas.topics import TopicSpec
from tests import support
from tests.apps.counting import COUNT_INPUT, COUNT_OUTPUT

RECORDS = 10_000
USERS = 97


async def produce(brokers: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, acks=1)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume_all(
    brokers: str, spec: TopicSpec, stop_when, timeout_s: float
) -> dict[int, list[tuple[bytes, bytes]]]:
    """Records of every partition from the start, until ``stop_when(by_partition)`` or timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    try:
        partitions = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while not stop_when(by_partition) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                by_partition[tp.partition].extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return by_partition


async def test_every_record_comes_back_in_order_per_partition(broker: str) -> None:
    spec = TopicSpec(f"test.roundtrip.{uuid.uuid4().hex[:6]}", 4)
    await ensure_topics(broker, [spec])
    sent = [(f"user-{i % USERS}".encode(), str(i).encode()) for i in range(RECORDS)]
    await produce(broker, spec.name, sent)

    received = await consume_all(
        broker, spec, lambda got: sum(map(len, got.values())) >= RECORDS, timeout_s=30
    )

    assert sorted(int(v) for records in received.values() for _, v in records) == list(
        range(RECORDS)
    )
    assert set(received) == {0, 1, 2, 3}, "keys should spread over every partition"
    for partition, records in received.items():
        sequence = [int(v) for _, v in records]
        assert sequence == sorted(sequence), f"partition {partition} out of order"
    # One key, one partition.
    partitions_of_key = defaultdict(set)
    for partition, records in received.items():
        for key, _ in records:
            partitions_of_key[key].add(partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())


async def test_faust_worker_counts_with_a_rocksdb_table(broker: str, tmp_path: Path) -> None:
    await ensure_topics(broker, [COUNT_INPUT, COUNT_OUTPUT])
    records = [(f"user-{i % USERS}".encode(), b"x") for i in range(RECORDS)]
    expected = defaultdict(int)
    for key, _ in records:
        expected[key] += 1
    await produce(broker, COUNT_INPUT.name, records)

    app_id = f"test-counting-{uuid.uuid4().hex[:6]}"
    worker = support.python_process(
        "counting-worker",
        ["-m", "tests.apps.counting"],
        tmp_path / "worker.log",
        env=support.child_env(
            env="test",
            token_secret="t",
            pii_master_key="p",
            link_secret="test-link-secret",
            kafka_brokers=broker,
            data_dir=str(tmp_path),
            app_id=app_id,
            web_enabled="false",
            log_level="warning",
        ),
    )
    worker.start()
    try:

        def every_count_seen(got: dict[int, list[tuple[bytes, bytes]]]) -> bool:
            assert worker.is_running(), f"worker exited:\n{worker.log_tail()}"
            return sum(map(len, got.values())) >= RECORDS

        outputs = await consume_all(broker, COUNT_OUTPUT, every_count_seen, timeout_s=60)
        # Anything beyond one output per input (a duplicate) comes of an input the worker
        # has not committed yet: once it has committed them all, read the outputs again.
        deadline = time.monotonic() + 60
        while not await support.group_caught_up(broker, app_id, [COUNT_INPUT.name]):
            assert time.monotonic() < deadline, "the worker did not commit every input"
            await asyncio.sleep(0.2)  # polling the committed offsets
        outputs = await consume_all(broker, COUNT_OUTPUT, lambda _: False, timeout_s=1.5)
    finally:
        status = worker.stop(timeout_s=20)

    latest: dict[bytes, int] = {}
    for records_of_partition in outputs.values():
        for key, value in records_of_partition:
            latest[key] = int(value)
    assert latest == expected
    assert sum(map(len, outputs.values())) == RECORDS, "one count update per input record"
    assert status == 0, f"worker did not stop cleanly:\n{worker.log_tail()}"


def test_a_taken_port_is_named(broker: str) -> None:
    port = int(broker.rsplit(":", 1)[1])
    with pytest.raises(BrokerError, match=f"broker: port {port} on 127.0.0.1 is already in use"):
        Broker(port=port).start()


def test_a_missing_binary_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="broker: Tansu binary not found"):
        Broker().start()


async def test_ensure_topics_is_idempotent_and_keeps_declared_partitions(broker: str) -> None:
    spec = TopicSpec(f"test.topics.{uuid.uuid4().hex[:6]}", 3)
    await ensure_topics(broker, [spec])
    await ensure_topics(broker, [spec])
    with pytest.raises(RuntimeError, match="has 3 partitions, 5 configured"):
        await ensure_topics(broker, [TopicSpec(spec.name, 5)])
