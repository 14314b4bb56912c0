"""Session fixtures on the real parts: a Tansu broker and a chDB warehouse server."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from api.settings import ApiSettings
from pipeline.local.broker import Broker, ensure_topics
from pipeline.settings import WorkerSettings
from schemas.topics import SOURCE_TOPICS
from tests import support


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers ("127.0.0.1:PORT") of a fresh Tansu with every source topic."""
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    with Broker(log_path=log_path) as running:
        asyncio.run(ensure_topics(running.bootstrap_servers, SOURCE_TOPICS))
        yield running.bootstrap_servers


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL ("http://127.0.0.1:PORT") of a warehouse server on a temporary data path."""
    root = tmp_path_factory.mktemp("warehouse")
    with support.running_warehouse(root / "data", root / "warehouse.log") as url:
        yield url


@pytest.fixture(scope="module")
def clickhouse(warehouse: str, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A clickhouse-connect client on a database of its own (migrated), dropped after the module."""
    with support.fresh_database(
        warehouse, f"test_{request.module.__name__.rsplit('.', 1)[-1]}"
    ) as client:
        yield client


@pytest.fixture
def make_worker_settings(tmp_path: Path, broker: str):
    """``make_worker_settings(**overrides)``: WorkerSettings on the fixture broker, tmp data."""

    def make(**overrides) -> WorkerSettings:
        return support.worker_settings(tmp_path, broker, **overrides)

    return make


@pytest.fixture
def make_api_settings(broker: str, warehouse: str):
    """``make_api_settings(**overrides)``: ApiSettings on the fixture broker and warehouse."""

    def make(**overrides) -> ApiSettings:
        return support.api_settings(broker, warehouse, **overrides)

    return make
