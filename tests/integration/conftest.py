"""Fixtures the integration modules share: the API served on the module's database,
and an HTTP client of it. A module whose API needs other settings (keys, secrets,
URLs) defines its own ``api``; ``http`` then speaks to that one."""

from collections.abc import Iterator

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from tests.collector_server import collector_settings, running_api


@pytest.fixture(scope="module")
def api(broker: str, warehouse: str, clickhouse: Client) -> Iterator[str]:
    """Base URL of the API with the collector's test settings, on the module's database."""
    settings = collector_settings(
        broker, clickhouse_url=warehouse, clickhouse_database=clickhouse.database
    )
    with running_api(settings) as url:
        yield url


@pytest.fixture(scope="module")
def http(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=30) as client:
        yield client
