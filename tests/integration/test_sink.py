"""The warehouse sink on the real warehouse (and broker): idempotent, lossless, blocking.

- the same batch twice adds nothing; re-delivery with other boundaries is never
  counted twice by the metrics queries;
- a warehouse outage holds the batch (retry with backoff) and it lands once;
- a real worker process records produced events, dead letters and receipts.
"""

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import pytest
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from api.queries.common import TimeRange
from api.queries.funnel import funnel
from api.queries.series import timeseries
from pipeline.local.broker import ensure_topics
from pipeline.local.simulate import generate_events
from pipeline.sink.batch import SinkBatch
from pipeline.sink.processors import process_event
from pipeline.sink.rows import ms
from pipeline.sink.writer import WarehouseWriter
from pipeline.warehouse.migrate import migrate_database
from schemas.events import parse_event
from schemas.messages import Receipt
from schemas.topics import RECEIPTS, TopicSpec
from tests import support

START = datetime(2024, 5, 8, tzinfo=UTC)
EVERYTHING = TimeRange(ms(START - timedelta(days=30)), ms(START + timedelta(days=1)))
STEPS = ["product_view", "add_to_cart", "checkout_started", "order_placed"]


def raw_records(count: int, seed: int = 7) -> list[bytes]:
    events = generate_events(seed, max(1, count // 20), count, START, days=3)
    return [parse_event(e, received_at=START).to_json() for e in events]


def batch_of(topic: str, records: list[tuple[int, int, bytes]]) -> SinkBatch:
    batch = SinkBatch(topic)
    for partition, offset, value in records:
        batch.add(partition, offset, process_event(value, 0))
    return batch


def located(values: list[bytes]) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) as if produced round-robin to 4 partitions."""
    return [(i % 4, i // 4, value) for i, value in enumerate(values)]


def fixture_writer(client: Client) -> WarehouseWriter:
    """A writer on the fixture's database (its client already names it)."""
    writer = WarehouseWriter("unused", "unused")
    writer._client = client
    return writer


def total_events(client: Client) -> int:
    return sum(p.value for p in timeseries(client, "events", 86_400, EVERYTHING))


def test_same_batch_twice_adds_no_rows(clickhouse: Client) -> None:
    writer = fixture_writer(clickhouse)
    records = located(raw_records(1000))
    batch = batch_of("t.same", records)
    writer.write_batch(batch)
    writer.write_batch(batch)
    assert clickhouse.command("SELECT count() FROM events") == 1000  # the token dropped it
    assert total_events(clickhouse) == 1000
    clickhouse.command("TRUNCATE TABLE events")
    clickhouse.command("TRUNCATE TABLE funnel_steps")  # filled from events by a view


def test_redelivery_with_other_boundaries_is_not_counted_twice(clickhouse: Client) -> None:
    writer = fixture_writer(clickhouse)
    values = raw_records(2000, seed=11)
    records = located(values)
    writer.write_batch(batch_of("t.bounds", records[:1200]))
    writer.write_batch(batch_of("t.bounds", records[1200:]))
    before = funnel(clickhouse, STEPS, 3600, EVERYTHING, "device")
    # A crash after the first insert: the consumer re-reads from an older offset
    # with different batch boundaries (and a client resends part of its batch).
    writer.write_batch(batch_of("t.bounds", records[600:1700]))
    writer.write_batch(batch_of("t.bounds", records[1700:]))
    assert clickhouse.command("SELECT count() FROM events") > 2000  # duplicates are stored...
    assert total_events(clickhouse) == 2000  # ...and never counted
    assert funnel(clickhouse, STEPS, 3600, EVERYTHING, "device") == before
    orders = sum(p.value for p in timeseries(clickhouse, "orders", 86_400, EVERYTHING))
    expected_orders = len({v for v in values if b'"order_placed"' in v})
    assert orders == expected_orders
    clickhouse.command("OPTIMIZE TABLE events FINAL")
    assert clickhouse.command("SELECT count() FROM events") == 2000  # ReplacingMergeTree
    clickhouse.command("TRUNCATE TABLE events")
    clickhouse.command("TRUNCATE TABLE funnel_steps")  # filled from events by a view


def month_events(months: int, normal: int) -> list[bytes]:
    """``months`` events one month apart from 2000-01 (as a hostile write key can send them)
    and ``normal`` events of the test week."""
    values = []
    for n in range(months):
        at = datetime(2000 + n // 12, n % 12 + 1, 15, tzinfo=UTC)
        raw = {
            "event_id": str(uuid.uuid4()),
            "name": "page_view",
            "timestamp": at.isoformat(),
            "anonymous_id": f"anon-month-{n}",
            "properties": {"url": "https://shop.example/"},
        }
        values.append(parse_event(raw, received_at=START).to_json())
    return values + raw_records(normal, seed=23)


def test_a_batch_over_more_than_100_months_lands_whole(clickhouse: Client) -> None:
    """One insert may span at most 100 partitions (months): the sink splits by partition,
    so a batch with events of 150 months is stored whole, not lost or retried forever."""
    writer = fixture_writer(clickhouse)
    values = month_events(150, 500)
    batch = batch_of("t.months", located(values))

    asyncio.run(asyncio.wait_for(writer.write(batch), 60))

    assert clickhouse.command("SELECT count() FROM events") == len(values)
    assert clickhouse.command("SELECT uniqExact(toYYYYMM(timestamp)) FROM events") >= 151
    assert writer.quarantined == 0
    # Re-delivered with the same boundaries: the same split, the same tokens, nothing doubled.
    writer.write_batch(batch_of("t.months", located(values)))
    assert clickhouse.command("SELECT count() FROM events") == len(values)
    clickhouse.command("TRUNCATE TABLE events")
    clickhouse.command("TRUNCATE TABLE funnel_steps")  # filled from events by a view


def test_rows_the_warehouse_refuses_are_dead_lettered_and_the_rest_land(warehouse: str) -> None:
    """A row the warehouse refuses for its content (here a CHECK constraint the test adds)
    becomes a dead letter with the reason and its record's location; the others are stored
    and the write returns instead of retrying forever."""
    with support.fresh_database(warehouse, "sink_refused") as client:
        client.command(
            "ALTER TABLE events ADD CONSTRAINT recent CHECK timestamp >= '2020-01-01 00:00:00'"
        )
        writer = fixture_writer(client)
        values = month_events(3, 400)  # three events of 2000: refused
        records = located(values)
        batch = batch_of("t.refused", records)
        refused = {"reason": "warehouse_refused_VIOLATED_CONSTRAINT"}
        counted_before = REGISTRY.get_sample_value("intentflow_dead_letters_total", refused) or 0

        asyncio.run(asyncio.wait_for(writer.write(batch), 60))

        assert client.command("SELECT count() FROM events") == 400
        letters = client.query(
            "SELECT source_topic, partition, offset, reason, errors FROM dead_letters"
            " ORDER BY partition, offset"
        ).result_rows
        assert [(t, p, o) for t, p, o, _, _ in letters] == sorted(
            ("t.refused", p, o) for p, o, _ in records[:3]
        )
        assert {reason for _, _, _, reason, _ in letters} == {
            "warehouse_refused_VIOLATED_CONSTRAINT"
        }
        assert all("VIOLATED_CONSTRAINT" in errors for *_, errors in letters)
        assert writer.quarantined == 3
        # The worker's /metrics counts them by reason.
        counted = REGISTRY.get_sample_value("intentflow_dead_letters_total", refused)
        assert counted - counted_before == 3


def _warehouse(data: Path, port: int, log: Path):
    return support.python_process(
        "warehouse",
        [
            *("-m", "pipeline.local.warehouse", "--data-path", str(data)),
            *("--host", support.LOOPBACK, "--port", str(port), "--log-level", "warning"),
        ],
        log,
    )


def test_warehouse_down_holds_the_batch_and_it_lands_once(tmp_path: Path) -> None:
    port = support.free_port()
    url = f"http://{support.LOOPBACK}:{port}"
    process = _warehouse(tmp_path / "data", port, tmp_path / "wh1.log")
    process.start()
    try:
        support.wait_for(lambda: support.http_ok(f"{url}/ping", "Ok."), 30, "warehouse")
        migrate_database(url, "sinkdown")
        values = raw_records(600, seed=3)
        records = located(values)
        first, second = batch_of("t.down", records[:300]), batch_of("t.down", records[300:])
        writer = WarehouseWriter(url, "sinkdown", retry_initial_s=0.1, retry_max_s=0.5)

        async def scenario() -> None:
            nonlocal process
            await writer.write(first)
            process.stop(10)
            pending = asyncio.create_task(writer.write(second))
            deadline = time.monotonic() + 20
            # Polls a counter the writer bumps; no event to wait on.
            while writer.retries < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert writer.retries >= 2 and not pending.done(), "the batch is held, retrying"
            process = _warehouse(tmp_path / "data", port, tmp_path / "wh2.log")
            process.start()
            await asyncio.wait_for(pending, 60)
            await writer.write(second)  # re-delivered after the outage: dropped by its token

        asyncio.run(scenario())
        writer.close()
        client = clickhouse_connect.get_client(dsn=url, database="sinkdown")
        try:
            assert client.command("SELECT count() FROM events") == 600
            assert client.command("SELECT uniqExact(event_id) FROM events") == 600
        finally:
            client.close()
    finally:
        process.stop(10)


async def _produce(brokers: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def _receipt(message_id: str, status: str, at: datetime) -> Receipt:
    receipt_id = hashlib.sha256(f"{message_id}|{status}".encode()).hexdigest()[:32]
    return Receipt(
        receipt_id=receipt_id,
        message_id=message_id,
        kind="cart_rescue",
        user_key="u-receipt",
        channel="whatsapp",
        status=status,
        at=at,
    )


@pytest.mark.timeout(150)
def test_worker_records_events_dead_letters_and_receipts(
    broker: str, warehouse: str, clickhouse: Client, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    source = f"sinktest-{run}.telemetry.raw"
    asyncio.run(ensure_topics(broker, [TopicSpec(source, 4)]))
    values = raw_records(1500, seed=5)
    invalid = [b"not json", b'{"name": "page_view"}', b"[1, 2]"]
    message_ids = [uuid.uuid4().hex for _ in range(3)]
    receipts = [
        _receipt(m, status, START + timedelta(minutes=i))
        for m in message_ids
        for i, status in enumerate(("sent", "delivered"))
    ]
    records = [(source, str(i % 50).encode(), v) for i, v in enumerate(values)]
    records += [(source, b"bad", v) for v in invalid]
    records += [(RECEIPTS.name, r.user_key.encode(), r.to_json()) for r in receipts]
    asyncio.run(_produce(broker, records))

    env = support.process_env(
        app_id=f"sinktest-{run}",
        kafka_brokers=broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        data_dir=str(tmp_path / "worker"),
        source_topic=source,
        wall_clock_watermark="false",
    )
    log = tmp_path / "worker.log"
    worker = support.python_process("worker", ["-m", "pipeline.cli", "worker"], log, env)
    worker.start()
    try:

        def landed() -> bool:
            events = clickhouse.command("SELECT count() FROM events")
            letters = clickhouse.command(
                "SELECT count() FROM dead_letters WHERE source_topic = {t:String}",
                parameters={"t": source},
            )
            found = clickhouse.command(
                "SELECT count() FROM receipts WHERE message_id IN {ids:Array(String)}",
                parameters={"ids": message_ids},
            )
            return events >= len(values) and letters >= 3 and found >= len(receipts)

        support.wait_for(landed, 100, "the sink's rows", interval_s=0.5)
        # Offsets are committed only once their rows are in: past the end, no more can come.
        support.wait_for(
            lambda: support.consumed_to_end(broker, f"sinktest-{run}", [source, RECEIPTS.name]),
            60,
            "the worker's commits past every record",
            interval_s=0.5,
        )
    finally:
        worker.stop(15)
    assert clickhouse.command("SELECT count() FROM events") == len(values)
    assert clickhouse.command("SELECT uniqExact(event_id) FROM events") == len(values)
    letters = clickhouse.query(
        "SELECT reason, value_bytes FROM dead_letters WHERE source_topic = {t:String}"
        " ORDER BY value_bytes",
        parameters={"t": source},
    ).result_rows
    assert letters == [("invalid_event", 6), ("invalid_event", 8), ("invalid_event", 21)]
    stored = clickhouse.query(
        "SELECT message_id, status FROM receipts WHERE message_id IN {ids:Array(String)}",
        parameters={"ids": message_ids},
    ).result_rows
    assert sorted(stored) == sorted((r.message_id, r.status) for r in receipts)
    assert "Traceback" not in log.read_text(), worker.log_tail(40)
