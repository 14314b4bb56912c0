"""``GET /v1/health`` against the real broker and warehouse, with and without a worker."""

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.main import create_app
from tests import support


def get_health(settings) -> tuple[int, dict]:
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/health")
    return response.status_code, response.json()


def test_no_worker_means_degraded_with_the_worker_named(
    make_api_settings, clickhouse: Client
) -> None:
    settings = make_api_settings(
        clickhouse_database=clickhouse.database, app_id="health-test-no-worker"
    )
    status, body = get_health(settings)
    assert status == 503
    assert body["status"] == "degraded"
    components = body["components"]
    assert components["broker"]["status"] == "ok"
    assert components["warehouse"]["status"] == "ok"
    assert components["worker"]["status"] == "down"


def test_unreachable_parts_are_reported_not_raised() -> None:
    dead = f"127.0.0.1:{support.free_port()}"
    settings = support.api_settings(dead, f"http://{dead}")
    status, body = get_health(settings)
    assert status == 503
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "broker": "down",
        "warehouse": "down",
        "worker": "down",
    }
