"""The API on a real port for collector and browser tests: uvicorn in a thread, real broker."""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from api.main import create_app
from api.settings import ApiSettings
from pipeline.local.ports import LOOPBACK, free_port
from schemas.events import EventError, load_event
from schemas.keys import hash_api_key
from schemas.topics import TELEMETRY_RAW
from tests.support import serving

WRITE_KEY = "wk_test-write-key"
SERVER_KEY = "sk_test-server-key"
READ_KEY = "rk_test-read-key"
DEFAULT_PUBLIC_API_URL = ApiSettings.model_fields["public_api_url"].default


def collector_settings(brokers: str, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "env": "test",
        "kafka_brokers": brokers,
        "clickhouse_url": "http://127.0.0.1:1",
        "token_secret": "test-token-secret",
        "pii_master_key": "test-pii-master-key",
        "link_secret": "test-link-secret",
        "write_key_hashes": frozenset({hash_api_key(WRITE_KEY)}),
        "server_key_hashes": frozenset({hash_api_key(SERVER_KEY)}),
        "read_key_hashes": frozenset({hash_api_key(READ_KEY)}),
        "produce_timeout_s": 3.0,
    }
    values.update(overrides)
    return ApiSettings(**values)


@contextmanager
def running_api(settings: ApiSettings, port: int | None = None) -> Iterator[str]:
    """Serve ``create_app(settings)`` with uvicorn on a free loopback port (or ``port``);
    yields the base URL (also its ``public_api_url`` unless the settings name another)."""
    port = port or free_port()
    if settings.public_api_url == DEFAULT_PUBLIC_API_URL:
        # Where it really answers: what Twilio's signatures and tracked links name.
        settings = settings.model_copy(update={"public_api_url": f"http://{LOOPBACK}:{port}"})
    with serving(create_app(settings), port, "api") as url:
        yield url


def served_api(**overrides: Any) -> Any:
    """A module-scoped ``api`` fixture: the API served on a free port on the module's
    database, with the collector's test settings plus ``overrides``; yields its URL."""
    import pytest

    @pytest.fixture(scope="module")
    def api(broker: str, warehouse: str, clickhouse: Any) -> Iterator[str]:
        settings = collector_settings(
            broker, clickhouse_url=warehouse, clickhouse_database=clickhouse.database, **overrides
        )
        with running_api(settings) as url:
            yield url

    return api


@contextmanager
def api_client(settings: ApiSettings) -> Iterator[httpx.Client]:
    """An httpx client on ``create_app(settings)`` served on a free loopback port."""
    with running_api(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def event(name: str = "page_view", **fields: Any) -> dict[str, Any]:
    """A valid client event; ``fields`` override envelope fields."""
    properties = {
        "page_view": {"url": "https://shop.example/"},
        "product_view": {"product_id": "p-1", "price": 10.0},
        "add_to_cart": {"product_id": "p-1", "quantity": 1, "price": 10.0},
    }.get(name, {})
    base = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": datetime.now(UTC).isoformat(),
        "anonymous_id": f"anon-{uuid.uuid4()}",
        "properties": properties,
    }
    base.update(fields)
    return base


async def consume_raw(
    brokers: str, wanted_ids: set[str], timeout_s: float = 20.0
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """(partition, key, value) of the records on telemetry.raw whose event_id is wanted."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[int, bytes, dict[str, Any]]] = []
    try:
        partitions = [
            TopicPartition(TELEMETRY_RAW.name, p) for p in range(TELEMETRY_RAW.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        seen: set[str] = set()
        while seen < wanted_ids and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    value = orjson.loads(record.value)
                    if value.get("event_id") in wanted_ids:
                        seen.add(value["event_id"])
                        found.append((tp.partition, record.key, value))
    finally:
        await consumer.stop()
    return found


def _event_dict(value: bytes | None) -> dict[str, Any] | None:
    """The record as a dict when it is an event (``load_event`` reads it), else None."""
    try:
        load_event(value or b"")
    except EventError:
        return None
    return orjson.loads(value or b"")


async def consume_matching(
    brokers: str,
    predicate: Callable[[dict[str, Any]], bool],
    until: Callable[[list], bool],
    timeout_s: float = 20.0,
) -> list[dict[str, Any]]:
    """Events on telemetry.raw for which ``predicate`` holds, read until ``until(found)``.

    The predicate sees events only: the session's topic also holds a live worker's own
    records (watermarks, hand-overs: schemas/engine_records.py) and other tests' poison
    records (test_dashboards writes one), in whatever order the test processes ran.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        partitions = [
            TopicPartition(TELEMETRY_RAW.name, p) for p in range(TELEMETRY_RAW.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while not until(found) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values = (_event_dict(record.value) for record in records)
                found.extend(v for v in values if v is not None and predicate(v))
    finally:
        await consumer.stop()
    return found
