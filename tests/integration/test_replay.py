"""Replay and backtest on the real parts: a live worker records a simulated day, then
export, replay (from the file and from the topic) and compare.

The "live" run: a real worker process (score agent + warehouse sink, run_id 'live')
on a broker of this module's own, so the live topics are the real ``telemetry.raw``,
``nudges`` and ``vip``. The simulated day is historical and produced with pauses
(the hand-overs below), so the worker runs with ``wall_clock_watermark=false``: each
pause would otherwise be an idle, caught-up partition, whose watermark record moves
it to today and fires every cart of the day at once. (That is still replayed exactly
— the record is in the log — but it is not the day this test means to record;
tests/integration/test_backlog.py covers a live worker catching up.) Records
are produced in arrival order (``received_at``; 1 % of them arrive 10 minutes late),
and sentinel page views at the end of the range move every partition's watermark
past every deadline, so live fires what the replay fires at the end of its range.

One ordering point that a burst must respect: an identify's hand-over reaches the
user's partition through ``identity.handover``. In real time it arrives long before
the shopper's next event (seconds later); produced in a burst it would not. So the
producer holds a newly identified user's next event until the worker has merged the
hand-over (the user's state shows up in the state changelog): the live history is
then the one real-time traffic makes, and the one the replay reproduces.
"""

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.main import create_app
from pipeline.domain import rules as rules_module
from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.simulate import generate_events
from schemas.backtests import NOT_TRIGGERED
from schemas.engine_records import is_handover
from schemas.events import parse_event
from schemas.keys import hash_api_key
from schemas.messages import load_decision
from schemas.topics import NUDGES, RECEIPTS, SOURCE_TOPICS, VIP, TopicSpec
from tests import support
from tests.chaos.harness import CHANGELOG, DAY_END, SENTINEL_AT, sentinel_raws

DAY_START = DAY_END - timedelta(days=1)
RANGE_TO = SENTINEL_AT + timedelta(milliseconds=1)
TOKEN_SECRET = "test-token-secret-of-at-least-32-bytes"
READ_KEY = "rk_test-read-key"
# Small: each identify costs the live run a hand-over round trip (~1 s on Tansu).
USERS, EVENTS = 100, 2_000


def traffic() -> list[tuple[bytes, bytes, str | None]]:
    """(key, value, user id an identify hands over to) in arrival order."""
    arrivals = []
    for index, raw in enumerate(generate_events(21, USERS, EVENTS, DAY_END, days=1.0)):
        at = datetime.fromisoformat(raw["timestamp"])
        late = index % 97 == 50 and raw["name"] != "identify"
        received = at + timedelta(minutes=10) if late else at
        arrivals.append((received, index, raw))
    for p, raw in enumerate(sentinel_raws(SENTINEL_AT)):
        arrivals.append((SENTINEL_AT, 10_000_000 + p, raw))
    records = []
    for received, _, raw in sorted(arrivals, key=lambda a: (a[0], a[1])):
        event = parse_event(raw, received_at=received)
        hands_over = event.user_id if event.name == "identify" else None
        records.append((event.key.encode(), event.to_json(), hands_over))
    return records


async def record_live_day(brokers: str, records: list[tuple[bytes, bytes, str | None]]) -> None:
    merged: set[bytes] = set()
    watcher = AIOKafkaConsumer(
        CHANGELOG, bootstrap_servers=brokers, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await watcher.start()

    async def watch() -> None:
        async for message in watcher:
            merged.add(message.key)

    watching = asyncio.create_task(watch())
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5)
    await producer.start()
    try:
        pending: set[bytes] = set()
        for key, value, hands_over in records:
            if key in pending:
                await producer.flush()
                async with asyncio.timeout(60):
                    while key not in merged:  # noqa: ASYNC110 - fed by another task
                        await asyncio.sleep(0.01)
                pending.discard(key)
            await producer.send("telemetry.raw", value, key=key)
            if hands_over:
                pending.add(hands_over.encode())
        await producer.flush()
        sentinels = {key for key, _, _ in records if key.startswith(b"sentinel-")}
        async with asyncio.timeout(60):
            while not sentinels <= merged:  # noqa: ASYNC110 - fed by another task
                await asyncio.sleep(0.05)
    finally:
        await producer.stop()
        watching.cancel()
        await watcher.stop()


async def read_topic(brokers: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[bytes] = []
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                return found
            found += [m.value for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()


async def end_offsets(brokers: str, topics: list[str]) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)
        ]
        return {
            f"{tp.topic}/{tp.partition}": o
            for tp, o in (await consumer.end_offsets(partitions)).items()
        }
    finally:
        await consumer.stop()


def canonical(values: list[bytes]) -> set[str]:
    """Decisions as comparable text; the VIP token is left out (a replay never signs one)."""
    out = set()
    for value in values:
        dump = load_decision(value).model_dump(mode="json")
        dump.pop("token", None)
        out.add(json.dumps(dump, sort_keys=True))
    return out


def nudged_users(decisions: set[str]) -> dict[str, list[dict]]:
    by_user: dict[str, list[dict]] = {}
    for text in decisions:
        d = json.loads(text)
        if d["type"] == "nudge":
            by_user.setdefault(d["user_key"], []).append(d)
    return by_user


def users(decisions: set[str]) -> set[str]:
    by_user = nudged_users(decisions).items()
    return {u for u, ns in by_user if any(n["status"] == "emit" for n in ns)}


def expected_only_in(x: set[str], y: set[str]) -> set[tuple[str, str, str, str]]:
    """Independently: x's emitted nudges of users y did not nudge, with y's reasons."""
    xs, ys = nudged_users(x), nudged_users(y)
    emitted_by_y = {u for u, ns in ys.items() if any(n["status"] == "emit" for n in ns)}
    out = set()
    for user, nudges in xs.items():
        if user in emitted_by_y:
            continue
        reasons = sorted({n["reason"] for n in ys.get(user, []) if n["status"] == "suppressed"})
        for n in nudges:
            if n["status"] == "emit":
                reason = ",".join(reasons) or NOT_TRIGGERED
                out.add((n["nudge_id"], user, n["kind"], reason))
    return out


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("replay-broker") / "broker.log"
    with Broker(log_path=log_path) as running:
        specs = [*SOURCE_TOPICS, TopicSpec(CHANGELOG, 4)]
        asyncio.run(ensure_topics(running.bootstrap_servers, specs))
        yield running.bootstrap_servers


@pytest.fixture(scope="module")
def rules_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    default = Path(rules_module.__file__).with_name("default_rules.yaml")
    folder = tmp_path_factory.mktemp("rules")
    same = folder / "same.yaml"
    same.write_text(default.read_text())
    lowered = yaml.safe_load(default.read_text())
    lowered["version"] = "candidate-threshold-4"
    lowered["high_intent"]["threshold"] = 4.0
    low = folder / "low.yaml"
    low.write_text(yaml.safe_dump(lowered))
    return same, low


@pytest.fixture(scope="module")
def live_day(own_broker: str, warehouse: str, clickhouse: Client, tmp_path_factory) -> set[str]:
    """The live decisions of the simulated day (also in the warehouse as run 'live')."""
    tmp = tmp_path_factory.mktemp("live")
    env = support.child_env(
        env="test",
        kafka_brokers=own_broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        data_dir=str(tmp),
        token_secret=TOKEN_SECRET,
        pii_master_key="test-pii-master-key",
        link_secret="test-link-secret",
        web_enabled="false",
        wall_clock_watermark="false",
        batch_within_s="0.01",
    )
    log = tmp / "worker.log"
    process = support.python_process("worker", ["-m", "pipeline.cli", "worker"], log, env)
    process.start()
    try:
        asyncio.run(record_live_day(own_broker, traffic()))
        live = asyncio.run(read_topic(own_broker, NUDGES.name))
        live += asyncio.run(read_topic(own_broker, VIP.name))
        nudges = {load_decision(v).nudge_id for v in live if b'"type":"nudge"' in v}

        def sunk() -> bool:
            query = "SELECT uniqExact(nudge_id) FROM nudges FINAL WHERE run_id = 'live'"
            return clickhouse.query(query).result_rows[0][0] == len(nudges)

        support.wait_for(sunk, 30, "the live sink's nudge rows")
    finally:
        process.stop(15)
    assert "Traceback" not in log.read_text(), process.log_tail(40)
    return canonical(live)


def live_fingerprint(client: Client) -> tuple:
    row = client.query(
        "SELECT count(), groupBitXor(cityHash64(nudge_id, status, reason, decided_at)) "
        "FROM nudges FINAL WHERE run_id = 'live'"
    ).result_rows[0]
    return tuple(row)


def test_replays_reproduce_live_and_a_candidate_is_compared_exactly(
    own_broker: str,
    warehouse: str,
    clickhouse: Client,
    live_day: set[str],
    rules_files: tuple[Path, Path],
    tmp_path: Path,
):
    same, low = rules_files

    def cli(*args: str) -> str:
        return support.run_intentflow(list(args), own_broker, warehouse, clickhouse.database)

    live_topics = [NUDGES.name, VIP.name, RECEIPTS.name]
    offsets_before = asyncio.run(end_offsets(own_broker, live_topics))
    live_rows_before = live_fingerprint(clickhouse)
    assert live_rows_before[0] > 20, "the day should hold decisions"

    window = ["--from", DAY_START.isoformat(), "--to", RANGE_TO.isoformat()]
    # The worker wrote one hand-over record per anonymous state it handed over.
    handovers = sum(map(is_handover, asyncio.run(read_topic(own_broker, "telemetry.raw"))))
    assert handovers > 0, "the day should hold identified shoppers"
    exported = {}
    for name in ("day.ndjson.gz", "day.parquet"):
        out = cli("export", "--topic", "telemetry.raw", *window, "--out", str(tmp_path / name))
        assert f"exported {EVENTS + 16 + handovers:,} events" in out
        exported[name] = tmp_path / name

    def run_decisions(run_id: str) -> set[str]:
        values = asyncio.run(read_topic(own_broker, f"replay.{run_id}.nudges"))
        return canonical(values + asyncio.run(read_topic(own_broker, f"replay.{run_id}.vip")))

    cli(
        "replay",
        "--rules",
        str(same),
        "--run-id",
        "same-file",
        "--file",
        str(exported["day.ndjson.gz"]),
    )
    cli(
        "replay",
        "--rules",
        str(same),
        "--run-id",
        "same-parquet",
        "--file",
        str(exported["day.parquet"]),
    )
    out = cli(
        "replay",
        "--rules",
        str(same),
        "--run-id",
        "same-topic",
        "--topic",
        "telemetry.raw",
        *window,
    )
    assert f"{EVENTS + 16:,} events" in out and "would send" in out
    for run_id in ("same-file", "same-parquet", "same-topic"):
        replayed = run_decisions(run_id)
        assert replayed == live_day, f"{run_id}: {len(replayed ^ live_day)} decisions differ"

    # A candidate with a lower high-intent threshold (and its own version).
    cli("replay", "--rules", str(low), "--run-id", "low", "--file", str(exported["day.ndjson.gz"]))
    # Re-running a run id replaces its results.
    cli("replay", "--rules", str(low), "--run-id", "low", "--file", str(exported["day.ndjson.gz"]))
    candidate = run_decisions("low")
    baseline = run_decisions("same-file")
    assert users(candidate) > users(baseline), "a lower threshold nudges more users"

    report = json.loads(cli("backtest", "compare", "same-file", "low", "--json"))
    got_b = {(i["nudge_id"], i["user_key"], i["kind"], i["reason"]) for i in report["only_in_b"]}
    got_a = {(i["nudge_id"], i["user_key"], i["kind"], i["reason"]) for i in report["only_in_a"]}
    assert got_b == expected_only_in(candidate, baseline) and got_b
    assert got_a == expected_only_in(baseline, candidate) == set()
    assert report["b"]["users_nudged"] == len(users(candidate))
    assert report["b"]["rules_versions"] == ["candidate-threshold-4"]
    emitted = sum(1 for t in candidate if '"status": "emit"' in t)
    assert sum(report["b"]["nudges_by_kind"].values()) == emitted
    assert report["a"]["converted_users"] is not None
    rows = clickhouse.query("SELECT count() FROM nudges WHERE run_id = 'low'").result_rows[0][0]
    assert rows == sum(1 for t in candidate if '"type": "nudge"' in t), "re-run replaced its rows"

    # Live against its replay: nothing differs.
    same_as_live = json.loads(cli("backtest", "compare", "live", "same-topic", "--json"))
    assert same_as_live["only_in_a"] == same_as_live["only_in_b"] == []
    assert same_as_live["a"]["nudges_by_kind"] == same_as_live["b"]["nudges_by_kind"]

    # The API answers the same report with a read key.
    settings = support.api_settings(
        own_broker,
        warehouse,
        clickhouse_database=clickhouse.database,
        read_key_hashes=frozenset({hash_api_key(READ_KEY)}),
    )
    with TestClient(create_app(settings)) as api:
        answer = api.get(
            "/v1/backtests/compare",
            params={"a": "same-file", "b": "low", "limit": 100_000},
            headers={"Authorization": f"Bearer {READ_KEY}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == report
        assert api.get("/v1/backtests/compare", params={"a": "x", "b": "y"}).status_code == 401

    # Isolation: nothing reached the live topics or the live rows.
    assert asyncio.run(end_offsets(own_broker, live_topics)) == offsets_before
    assert live_fingerprint(clickhouse) == live_rows_before
