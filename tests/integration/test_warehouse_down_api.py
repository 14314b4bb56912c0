"""With the warehouse down, the API answers 503 with Retry-After, never 500."""

import uuid
from datetime import UTC, datetime

import httpx

from pipeline.warehouse.migrate import create_database
from schemas.warehouse import warehouse_client
from tests import support
from tests.collector_server import READ_KEY, WRITE_KEY, collector_settings, running_api


def event(name: str, **properties) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": datetime.now(UTC).isoformat(),
        "anonymous_id": "anon-down",
        "user_id": "user-down",
        "properties": properties,
    }


def test_warehouse_down_is_503_for_reads_and_consents_and_events_still_flow(broker: str):
    dead = f"http://127.0.0.1:{support.free_port()}"
    with running_api(collector_settings(broker, clickhouse_url=dead)) as api:
        read = {"Authorization": f"Bearer {READ_KEY}"}
        write = {"Authorization": f"Bearer {WRITE_KEY}"}
        funnel = httpx.get(
            f"{api}/v1/metrics/funnel?steps=page_view,order_placed&window=60", headers=read
        )
        consent = event("consent", channel="sms", granted=True, phone="+15550100099")
        with_consent = httpx.post(f"{api}/v1/track", json=consent, headers=write, timeout=10)
        plain = httpx.post(
            f"{api}/v1/track", json=event("page_view", url="https://shop.test/"), headers=write
        )
    assert funnel.status_code == 503 and int(funnel.headers["retry-after"]) >= 1
    # Consent must be recorded before its event is produced: refused, to be retried.
    assert with_consent.status_code == 503 and "retry-after" in with_consent.headers
    # Everything else does not depend on the warehouse.
    assert plain.status_code == 202


def test_a_warehouse_failing_after_the_connection_is_a_503_with_retry_after(
    broker: str, warehouse: str
):
    # The database exists but holds no table: the client connects, then every query fails.
    database = f"unmigrated_{uuid.uuid4().hex[:8]}"
    create_database(warehouse, database)
    settings = collector_settings(broker, clickhouse_url=warehouse, clickhouse_database=database)
    read = {"Authorization": f"Bearer {READ_KEY}"}
    try:
        with running_api(settings) as api:
            answers = {
                path: httpx.get(f"{api}{path}", headers=read)
                for path in (
                    "/v1/metrics/funnel?steps=page_view,order_placed&window=60",
                    "/v1/campaigns",
                )
            }
    finally:
        admin = warehouse_client(warehouse, None, timeout_s=30)
        admin.command(f"DROP DATABASE IF EXISTS {database}")
        admin.close()
    for path, answer in answers.items():
        assert answer.status_code == 503, (path, answer.text)
        assert int(answer.headers["retry-after"]) >= 1, path
        assert answer.json()["detail"].startswith("warehouse unavailable"), path
