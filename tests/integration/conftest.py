"""Fixtures the integration modules share: the API served on the module's database,
and an HTTP client of it. A module whose API needs other settings (keys, secrets,
URLs) defines its own ``api``; ``http`` then speaks to that one."""

from collections.abc import Iterator

import httpx
import pytest

from tests.collector_server import served_api

# Base URL of the API with the collector's test settings, on the module's database.
api = served_api()


@pytest.fixture(scope="module")
def http(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=30) as client:
        yield client
