"""Helpers shared by tests: ports, readiness, real child processes, settings for fixtures."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx

from api.settings import ApiSettings
from pipeline.local.ports import LOOPBACK, free_port
from pipeline.local.processes import ManagedProcess
from pipeline.settings import WorkerSettings
from pipeline.warehouse.migrate import apply_migrations

PROJECT_ROOT = Path(__file__).resolve().parents[1]

__all__ = ["LOOPBACK", "PROJECT_ROOT", "free_port"]


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s:g}s")
        time.sleep(interval_s)


def http_ok(url: str, expect_text: str | None = None, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200 (and, if given, a body that is ``expect_text``)."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return expect_text is None or response.text.strip() == expect_text


@contextmanager
def serving(app: Any, port: int | None = None, name: str = "server") -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a thread on a loopback port (free, or
    ``port``); yields its base URL once it listens; stops it after."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"{name}-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def wait_for_http(url: str, timeout_s: float = 30.0, expect_text: str | None = None) -> None:
    wait_for(lambda: http_ok(url, expect_text), timeout_s, f"200 from {url}")


MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_metrics(url: str) -> MetricSamples:
    """A /metrics page read with prometheus_client's parser: (name, labels) → value."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric_value(samples: MetricSamples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- consumer groups: how far a process has got -----------------------------------------


async def end_offsets(brokers: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) → the offset the next record produced there will get."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        found = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}
    finally:
        await consumer.stop()


async def tail_fetch_ms(brokers: str, topic: str) -> float | None:
    """Milliseconds the broker takes to answer one fetch of the last batch of every
    partition of ``topic``: its cost of a fetch at the tail, as a consumer keeping up
    pays it (None: nothing stored yet). One request on its own connection, so no
    background fetcher is left with a request in flight when it closes."""
    from aiokafka import AIOKafkaClient, TopicPartition
    from aiokafka.protocol.fetch import FetchRequest

    ends = await end_offsets(brokers, [topic])
    stored = [(partition, end) for (_, partition), end in sorted(ends.items()) if end > 0]
    if not stored:
        return None
    client = AIOKafkaClient(bootstrap_servers=brokers)
    await client.bootstrap()
    try:
        leader = client.cluster.leader_for_partition(TopicPartition(topic, stored[0][0]))
        # Tansu's end offset is the first offset of the last batch + 1 (docs/local-stack.md).
        partitions = [(partition, end - 1, 1 << 20) for partition, end in stored]
        request = FetchRequest(10, 1, 4 << 20, 0, [(topic, partitions)])
        started = time.perf_counter()
        await client.send(leader, request)
        return (time.perf_counter() - started) * 1000
    finally:
        await client.close()


async def committed_offsets(
    brokers: str, group: str, topics: list[str]
) -> dict[tuple[str, int], int]:
    """(topic, partition) → the group's committed offset (the next it will read; -1: none)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    ends = await end_offsets(brokers, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        partitions = [TopicPartition(topic, partition) for topic, partition in ends]
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {
        key: (meta.offset if (meta := found.get(TopicPartition(*key))) is not None else -1)
        for key in ends
    }


def committed_count(brokers: str, group: str, topics: list[str]) -> int:
    """How many records of ``topics`` the group has committed, all partitions together."""
    import asyncio

    found = asyncio.run(committed_offsets(brokers, group, topics))
    return sum(max(offset, 0) for offset in found.values())


async def group_caught_up(brokers: str, group: str, topics: list[str]) -> bool:
    """True once ``group`` has committed every record now on ``topics``: each process
    commits a record only after its effects are written, so nothing more will come of
    them. The condition to wait on before asserting that something did *not* happen."""
    ends = await end_offsets(brokers, topics)
    committed = await committed_offsets(brokers, group, topics)
    return all(committed[key] >= end for key, end in ends.items() if end > 0)


def consumed_to_end(brokers: str, group: str, topics: list[str]) -> bool:
    """``group_caught_up`` from synchronous code."""
    import asyncio

    return asyncio.run(group_caught_up(brokers, group, topics))


def child_env(**intentflow: str) -> dict[str, str]:
    """The test process's environment plus INTENTFLOW_<NAME> values, project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update({f"INTENTFLOW_{name.upper()}": value for name, value in intentflow.items()})
    return env


# What every test process is given: test values, never a deployment's.
TEST_SECRETS = {
    "token_secret": "test-token-secret-of-at-least-32-bytes",
    "pii_master_key": "test-pii-master-key",
    "link_secret": "test-link-secret",
}


def process_env(**intentflow: str) -> dict[str, str]:
    """``child_env`` for an intentflow process under test: env ``test``, the test secrets,
    no web server, then these INTENTFLOW_<NAME> values (which win)."""
    return child_env(**{"env": "test", "web_enabled": "false", **TEST_SECRETS, **intentflow})


def python_process(
    name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    """``python ARGS`` with this interpreter, in its own process group, run from the repo root."""
    return ManagedProcess(
        name, [sys.executable, *args], log_path, env=env or child_env(), cwd=PROJECT_ROOT
    )


@contextmanager
def running_warehouse(data_path: Path, log_path: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """A ``python -m pipeline.local.warehouse`` server; yields its URL; stops it after."""
    port = free_port()
    process = python_process(
        "warehouse",
        [
            "-m",
            "pipeline.local.warehouse",
            "--data-path",
            str(data_path),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        log_path,
    )
    process.start()
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not http_ok(f"{url}/ping", "Ok."):
            if not process.is_running():
                raise RuntimeError(f"warehouse exited early:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"warehouse: no /ping within {timeout_s:g}s")
            time.sleep(0.05)
        yield url
    finally:
        process.stop(10)


def worker_settings(
    data_dir: Path, brokers: str, clickhouse_url: str = "http://127.0.0.1:1", **overrides: Any
) -> WorkerSettings:
    return WorkerSettings(
        env="test",
        kafka_brokers=brokers,
        clickhouse_url=clickhouse_url,
        data_dir=data_dir,
        web_enabled=False,
        **{**TEST_SECRETS, **overrides},
    )


def run_intentflow(
    args: list[str], brokers: str, warehouse: str, database: str, **intentflow: str
) -> str:
    """``intentflow ARGS`` in process, on these parts (plus INTENTFLOW_<NAME> values);
    asserts it succeeded and returns its output."""
    from click.testing import CliRunner

    from pipeline.cli import main

    env = {
        "INTENTFLOW_KAFKA_BROKERS": brokers,
        "INTENTFLOW_CLICKHOUSE_URL": warehouse,
        "INTENTFLOW_CLICKHOUSE_DATABASE": database,
        **{f"INTENTFLOW_{name.upper()}": value for name, value in intentflow.items()},
    }
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def api_settings(brokers: str, clickhouse_url: str, **overrides: Any) -> ApiSettings:
    return ApiSettings(
        env="test",
        kafka_brokers=brokers,
        clickhouse_url=clickhouse_url,
        **{**TEST_SECRETS, **overrides},
    )


def in_process_api(**overrides: Any) -> Any:
    """A module-scoped ``api`` fixture: the API in this process (Starlette's TestClient)
    on the module's database, with ``api_settings`` plus ``overrides`` (its keys)."""
    import pytest
    from fastapi.testclient import TestClient

    from api.main import create_app

    @pytest.fixture(scope="module")
    def api(broker: str, warehouse: str, clickhouse: Any) -> Iterator[TestClient]:
        settings = api_settings(
            broker, warehouse, clickhouse_database=clickhouse.database, **overrides
        )
        with TestClient(create_app(settings)) as client:
            yield client

    return api


def pids_alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still exist and are not zombies."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def descendants(root_pid: int) -> set[int]:
    """Every process below ``root_pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [root_pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def pids_mentioning(text: str) -> set[int]:
    """Processes whose command line contains ``text`` (e.g. a test's unique data dir)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text in cmdline:
            found.add(int(entry.name))
    return pids_alive(found)


@contextmanager
def fresh_database(warehouse: str, prefix: str) -> Iterator[Any]:
    """A clickhouse-connect client on a new, migrated database; dropped afterwards."""
    safe = re.sub(r"\W", "_", prefix)
    database = f"{safe}_{uuid.uuid4().hex[:8]}"
    admin = clickhouse_connect.get_client(dsn=warehouse)
    admin.command(f"CREATE DATABASE {database}")
    client = clickhouse_connect.get_client(dsn=warehouse, database=database)
    apply_migrations(client)
    try:
        yield client
    finally:
        client.close()
        admin.command(f"DROP DATABASE IF EXISTS {database}")
        admin.close()


def zone_at(local_hour: int) -> str:
    """A fixed-offset zone where it is now ``local_hour`` o'clock (this hour of the real
    clock): tests pin a shopper's zone to day or night whatever the hour they run at."""
    offset = (local_hour - datetime.now(UTC).hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


# --- the providers (Meta's WhatsApp Cloud API, Twilio) in tests --------------------------

# One set of credentials: the simulator checks them, the dispatcher sends with them, the
# API verifies the webhooks the simulator signs with them.
PROVIDER_CREDENTIALS = {
    "whatsapp_phone_number_id": "106540352242922",
    "whatsapp_access_token": "test-whatsapp-access-token",
    "whatsapp_app_secret": "test-whatsapp-app-secret",
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": "test-twilio-auth-token",
    "twilio_from": "+15005550006",
}
WHATSAPP_VERIFY_TOKEN = "test-whatsapp-verify-token"


def sim_provider_settings(api_url: str) -> dict[str, str]:
    """The simulator's settings: our credentials and where it posts webhooks."""
    return {**PROVIDER_CREDENTIALS, "webhook_url": api_url}


def dispatcher_provider_settings(sim_url: str, api_url: str) -> dict[str, str]:
    """The dispatcher's settings sending to the simulator, callbacks to the API."""
    sending = {k: v for k, v in PROVIDER_CREDENTIALS.items() if k != "whatsapp_app_secret"}
    return {
        **sending,
        "whatsapp_api_url": sim_url,
        "twilio_api_url": sim_url,
        "public_api_url": api_url,
    }


def api_provider_settings(api_url: str | None = None) -> dict[str, Any]:
    """The API's webhook secrets (and, if known, its public URL Twilio signs)."""
    found: dict[str, Any] = {
        "whatsapp_app_secret": PROVIDER_CREDENTIALS["whatsapp_app_secret"],
        "whatsapp_verify_token": WHATSAPP_VERIFY_TOKEN,
        "twilio_auth_token": PROVIDER_CREDENTIALS["twilio_auth_token"],
    }
    if api_url is not None:
        found["public_api_url"] = api_url
    return found


def meta_signed(body: bytes, secret: str | None = None) -> dict[str, str]:
    """Headers of a webhook body as Meta signs it (X-Hub-Signature-256)."""
    import hashlib
    import hmac

    key = (secret or PROVIDER_CREDENTIALS["whatsapp_app_secret"]).encode()
    mac = hmac.new(key, body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={mac}"}


def twilio_signed(url: str, form: dict[str, str], token: str | None = None) -> dict[str, str]:
    """Headers of a form Twilio posts to ``url`` (X-Twilio-Signature, by Twilio's library)."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(token or PROVIDER_CREDENTIALS["twilio_auth_token"])
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(url, form),
    }


# --- the whole local stack as a user starts it -----------------------------------------

# The announcement's last line: every URL and key is printed once it shows.
_ANNOUNCED = "Ctrl-C stops everything."


@dataclass
class LocalStack:
    """A running ``intentflow local up --no-simulate`` and what it announced."""

    process: subprocess.Popen
    data_dir: Path
    log_path: Path
    api: str
    announcement: str = ""
    parts: set[int] = field(default_factory=set)

    @property
    def env(self) -> dict[str, str]:
        """The settings it wrote to ``local.env`` (keys, broker, warehouse)."""
        text = (self.data_dir / "local.env").read_text()
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {key: value.strip().strip("'\"") for key, value in pairs}

    def url(self, label: str) -> str:
        """The URL the announcement gives on the line ``label`` (e.g. ``phones``)."""
        found = re.search(rf"^  {re.escape(label)}\s+(\S+)", self.announcement, re.M)
        assert found, self.announcement
        return found.group(1)

    @property
    def metrics(self) -> dict[str, str]:
        """Process name (``worker-0``, ``dispatcher``, ...) → its /metrics URL."""
        pairs = re.findall(r"metrics\s+(\S+)\s+\((\S+)\)", self.announcement)
        return {name: url for url, name in pairs}

    def stop(self) -> tuple[int, set[int]]:
        """SIGTERM (the stack stops its parts in order), then SIGKILL for whatever of its
        own parts outlived it, found by process id. Returns (its exit status, the parts
        that had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        outlived = pids_alive(self.parts) | pids_mentioning(str(self.data_dir))
        for pid in outlived:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self.process.returncode, outlived


@contextmanager
def local_stack(
    tmp: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 180.0
) -> Iterator[LocalStack]:
    """``intentflow local up --no-simulate ARGS`` as a subprocess, as a user starts it;
    yields once it has announced itself, and stops it (and any part it left) after."""
    data_dir, log_path, api_port = tmp / "stack", tmp / "local-up.log", free_port()
    argv = [sys.executable, "-m", "pipeline.cli", "local", "up", "--no-simulate"]
    argv += ["--data-dir", str(data_dir), "--api-port", str(api_port), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env or child_env(), stdout=log, stderr=subprocess.STDOUT
        )
    stack = LocalStack(process, data_dir, log_path, f"http://{LOOPBACK}:{api_port}")
    try:

        def announced() -> bool:
            stack.announcement = log_path.read_text()
            assert process.poll() is None, stack.announcement[-3000:]
            return _ANNOUNCED in stack.announcement

        wait_for(announced, timeout_s, "the local stack up", interval_s=0.5)
        stack.parts = descendants(process.pid)
        yield stack
    finally:
        stack.stop()


def write_export(path: Path, raw_events: list[dict[str, Any]], partitions: int = 4) -> Path:
    """Client events (e.g. the simulator's) as an export file, as the collector would have
    logged them: keyed by ``Event.key``, partitioned like the producer, offsets in order."""
    import orjson
    from aiokafka.partitioner import murmur2

    from pipeline.replay.recorded import ExportHeader, RecordedEvent, write_records
    from schemas.events import parse_event

    offsets = [0] * partitions
    rows = []
    for raw in raw_events:
        event = parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"]))
        key = event.key.encode()
        partition = (murmur2(key) & 0x7FFFFFFF) % partitions
        value = event.to_json()
        record = RecordedEvent(partition, offsets[partition], key, value, event.ts_ms, event.ts_ms)
        rows.append((record, orjson.loads(value)))
        offsets[partition] += 1
    write_records(path, ExportHeader("telemetry.raw", partitions, None, None), rows)
    return path
