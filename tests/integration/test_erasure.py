"""Erasure on the real parts: the collector and admin API, the broker, the warehouse, and
``intentflow export`` / ``intentflow replay`` as a user runs them.

Events go through the collector onto ``telemetry.raw``; the test stands in for the
engine's sink by inserting their rows into ``events`` (from the records on the topic,
as the sink does). Then ``DELETE /v1/users/{id}``, and every reader of the log is asked
for the user again.
"""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.main import create_app
from api.privacy.erasure import CLAIMS, linked_subjects
from pipeline.domain import rules as rules_module
from pipeline.sink.rows import EVENTS, event_row
from schemas.dispatch_tables import SERVICE_WINDOWS
from schemas.events import load_event
from schemas.keys import hash_api_key
from tests import support
from tests.collector_server import WRITE_KEY, collector_settings, consume_raw

ADMIN_KEY = "ak_test-erasure-admin"
MASTER = "test-pii-master-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
# Within the collector's window of accepted event times (INTENTFLOW_MAX_EVENT_AGE_DAYS).
DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
RULES = Path(rules_module.__file__).with_name("default_rules.yaml")


@pytest.fixture(scope="module")
def api(broker: str, warehouse: str, clickhouse: Client) -> Iterator[TestClient]:
    settings = collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        pii_master_key=MASTER,
        link_secret="test-link-secret",
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
    )
    with TestClient(create_app(settings)) as client:
        yield client


def ev(name: str, at: datetime, anonymous: str, user: str | None = None, **props) -> dict:
    event = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": at.isoformat(),
        "anonymous_id": anonymous,
        "properties": props,
    }
    if user is not None:
        event["user_id"] = user
    return event


def journey(user: str, anonymous: str, at: datetime, agent: str) -> list[dict]:
    """Anonymous browsing, a consent with a phone, a login, a cart left behind."""
    context = {"user_agent": agent}
    events = [
        ev("product_view", at, anonymous, product_id="p-1", price=20.0),
        ev(
            "add_to_cart",
            at + timedelta(seconds=5),
            anonymous,
            product_id="p-1",
            quantity=1,
            price=20.0,
        ),
        ev(
            "consent",
            at + timedelta(seconds=8),
            anonymous,
            channel="whatsapp",
            granted=True,
            phone="+14155550142",
        ),
        ev("identify", at + timedelta(seconds=10), anonymous, user),
        ev(
            "add_to_cart",
            at + timedelta(seconds=20),
            anonymous,
            user,
            product_id="p-2",
            quantity=1,
            price=30.0,
        ),
    ]
    return [{**e, "context": context} for e in events]


def send(api: TestClient, broker: str, clickhouse: Client, events: list[dict]) -> None:
    """Through the collector onto the topic, then into ``events`` as the sink would."""
    response = api.post("/v1/track", json={"batch": events}, headers=WRITE)
    assert response.status_code == 202 and response.json()["rejected"] == [], response.text
    ids = {e["event_id"] for e in events}
    found = asyncio.run(consume_raw(broker, ids))
    assert {v["event_id"] for _, _, v in found} == ids
    rows = [event_row(load_event(orjson.dumps(value))) for _, _, value in found]
    clickhouse.insert(
        EVENTS.name, list(zip(*rows, strict=True)), EVENTS.columns, column_oriented=True
    )


def cli(args: list[str], broker: str, warehouse: str, database: str) -> str:
    return support.run_intentflow(args, broker, warehouse, database, pii_master_key=MASTER)


def decided_for(clickhouse: Client, run_id: str) -> set[str]:
    rows = clickhouse.query(
        "SELECT DISTINCT user_key FROM nudges WHERE run_id = {r:String}", parameters={"r": run_id}
    ).result_rows
    return {row[0] for row in rows}


def test_after_erasure_no_export_or_replay_gets_the_users_events_back(
    api: TestClient, broker: str, warehouse: str, clickhouse: Client, tmp_path: Path
):
    tag = uuid.uuid4().hex[:8]
    erased, erased_anon, agent = f"erased-{tag}", f"anon-erased-{tag}", f"AgentOfErased/{tag}"
    other, other_anon = f"other-{tag}", f"anon-other-{tag}"
    at = DAY + timedelta(hours=10)
    send(api, broker, clickhouse, journey(erased, erased_anon, at, agent))
    send(api, broker, clickhouse, journey(other, other_anon, at, "AgentOfOther/1"))
    db = clickhouse.database
    window = ["--from", DAY.isoformat(), "--to", (DAY + timedelta(days=1)).isoformat()]

    def export(name: str) -> tuple[Path, bytes]:
        out = tmp_path / name
        cli(["export", *window, "--out", str(out)], broker, warehouse, db)
        return out, out.read_bytes()

    def replay(run_id: str, *source: str) -> set[str]:
        args = ["replay", "--rules", str(RULES), "--run-id", run_id, *source]
        cli(args, broker, warehouse, db)
        return decided_for(clickhouse, run_id)

    # Before: the export holds the user, and a replay decides for them.
    before, text = export("before.ndjson")
    assert erased.encode() in text and agent.encode() in text
    # No engine ran on this topic, so the log holds no hand-over records: the replay
    # merges the anonymous state into the user's at the end of its range, and may
    # decide under either id before that (docs/replay.md). Either way, for this person.
    assert replay(f"before-{tag}", "--file", str(before)) & {erased, erased_anon}

    # The user once wrote to us on WhatsApp: their service window is personal data too.
    clickhouse.insert(
        SERVICE_WINDOWS,
        [[erased, "whatsapp", at]],
        column_names=["user_key", "channel", "last_inbound_at"],
    )

    report = api.delete(f"/v1/users/{erased}", headers=ADMIN)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["complete"], body

    # After: no export of the whole range holds anything of the user ...
    _, text = export("after.ndjson")
    for secret in (erased, erased_anon, agent):
        assert secret.encode() not in text, secret
    assert other.encode() in text
    # ... and no replay decides for them: of the new export, of the one made
    # before the erasure, or of the topic itself.
    for run_id, source in [
        (f"after-file-{tag}", ["--file", str(tmp_path / "after.ndjson")]),
        (f"old-file-{tag}", ["--file", str(before)]),
        (f"topic-{tag}", ["--topic", "telemetry.raw", *window]),
    ]:
        users = replay(run_id, *source)
        # As before the erasure: the other person is decided for, under either id
        # (which one depends on what else shares their partitions in the range).
        assert users & {other, other_anon}, run_id
        assert not users & {erased, erased_anon}, run_id
    # The report says who, and each place and how.
    assert {s["id"] for s in body["subjects"]} == {erased, erased_anon}
    places = {p["place"].split(" (")[0]: p["how"] for p in body["places"]}
    assert "erased_subjects" in places["log: telemetry.raw"]
    assert "deleted" in places["warehouse: events"]
    assert places["warehouse: service_windows"] == "1 rows deleted"
    left = clickhouse.query(
        f"SELECT count() FROM {SERVICE_WINDOWS} WHERE user_key = {{u:String}}",
        parameters={"u": erased},
    ).result_rows[0][0]
    assert left == 0


def test_erasing_a_user_never_erases_an_anonymous_id_someone_else_claimed_first(
    api: TestClient, broker: str, warehouse: str, clickhouse: Client
):
    """Issue 15 finding 2: the attacker pairs their id with the victim's anonymous id."""
    tag = uuid.uuid4().hex[:8]
    victim, victim_anon = f"victim-{tag}", f"anon-victim-{tag}"
    attacker, attacker_anon = f"attacker-{tag}", f"anon-attacker-{tag}"
    at = DAY + timedelta(hours=12)
    send(api, broker, clickhouse, journey(victim, victim_anon, at, "Victim/1"))
    later = at + timedelta(minutes=5)
    forged = [
        ev("page_view", later, attacker_anon, attacker, url="https://shop.example/"),
        ev("identify", later + timedelta(seconds=1), victim_anon, attacker),
    ]
    send(api, broker, clickhouse, forged)

    def left(table: str, column: str, subject: str) -> int:
        return clickhouse.query(
            f"SELECT count() FROM {table} WHERE {column} = {{s:String}}", parameters={"s": subject}
        ).result_rows[0][0]

    held = {t: left(t, "user_key", victim_anon) for t in ("consents", "pii_phones", "pii_keys")}
    assert all(held.values()), held

    body = api.delete(f"/v1/users/{attacker}", headers=ADMIN).json()
    assert left("events", "user_id", attacker) == 0
    # The victim keeps their events, consent, phone and key.
    assert left("events", "anonymous_id", victim_anon) >= 4
    assert {t: left(t, "user_key", victim_anon) for t in held} == held
    assert [s["id"] for s in body["subjects"]] == [attacker], body["subjects"]
    assert [d["id"] for d in body["not_erased"]] == [victim_anon]

    body = api.delete(f"/v1/users/{victim}", headers=ADMIN).json()
    linked = {s["id"]: s["linked_by"] for s in body["subjects"]}
    assert set(linked) == {victim, victim_anon}
    assert linked[victim] == "requested" and "identify" in linked[victim_anon]
    assert left("events", "anonymous_id", victim_anon) == 0
    assert {t: left(t, "user_key", victim_anon) for t in held} == dict.fromkeys(held, 0)


def changelog_keys(broker: str, topic: str) -> dict[bytes, bool]:
    """Each key of the state changelog, and whether its last record holds a state."""

    async def read() -> dict[bytes, bool]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
            if not partitions:
                return {}
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            keys: dict[bytes, bool] = {}
            while batch := await consumer.getmany(timeout_ms=500):
                for messages in batch.values():
                    keys.update((m.key, m.value is not None) for m in messages)
            return keys
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_a_new_consumer_group_rereading_the_log_does_not_bring_the_user_back(
    api: TestClient, broker: str, warehouse: str, clickhouse: Client, tmp_path: Path
):
    """A worker of a new app id (a new group, from the earliest offset): its engine skips
    the erased user's records, so neither state nor warehouse rows come back."""
    tag = uuid.uuid4().hex[:8]
    erased, erased_anon = f"erased-{tag}", f"anon-erased-{tag}"
    other, other_anon = f"other-{tag}", f"anon-other-{tag}"
    at = DAY + timedelta(hours=14)
    send(api, broker, clickhouse, journey(erased, erased_anon, at, "A/1"))
    send(api, broker, clickhouse, journey(other, other_anon, at, "B/1"))
    assert api.delete(f"/v1/users/{erased}", headers=ADMIN).json()["complete"]

    app_id = f"test-erasure-{tag}"
    env = support.process_env(
        app_id=app_id,
        kafka_brokers=broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        data_dir=str(tmp_path),
        pii_master_key=MASTER,
        wall_clock_watermark="false",
        batch_within_s="0.01",
    )
    log = tmp_path / "worker.log"
    worker = support.python_process("worker", ["-m", "pipeline.cli", "worker"], log, env)
    worker.start()
    try:
        # Sentinels on every partition, sent after: once their rows are in, the worker
        # has read (and its sink recorded) everything before them.
        later = at + timedelta(hours=1)
        sentinels = [
            ev("page_view", later, f"sentinel-{tag}-{p}", url="https://s/") for p in range(16)
        ]
        response = api.post("/v1/track", json={"batch": sentinels}, headers=WRITE)
        assert response.status_code == 202, response.text
        ids = [s["event_id"] for s in sentinels]

        def recorded() -> bool:
            query = "SELECT uniqExact(event_id) FROM events WHERE event_id IN {ids:Array(UUID)}"
            return clickhouse.query(query, parameters={"ids": ids}).result_rows[0][0] == len(ids)

        support.wait_for(recorded, 120, "the new worker's sink to record the sentinels")
    finally:
        worker.stop(15)
    assert "Traceback" not in log.read_text(), worker.log_tail(40)
    keys = changelog_keys(broker, f"{app_id}-user-state-changelog")
    assert keys.get(other.encode()), "the new worker re-read the log"
    assert not keys.get(erased.encode()) and not keys.get(erased_anon.encode())
    rows = clickhouse.query(
        "SELECT count() FROM events WHERE user_id = {u:String} OR anonymous_id = {a:String}",
        parameters={"u": erased, "a": erased_anon},
    ).result_rows[0][0]
    assert rows == 0


def test_finding_what_a_user_claimed_reads_the_identifies_not_the_history(clickhouse: Client):
    """The anonymous ids a user was seen with come from ``identity_links``; of ``events``
    only the identifies (``name`` leads its key) are read, not every event stored."""
    tag = uuid.uuid4().hex[:8]
    user, browser = f"user-{tag}", f"anon-{tag}"
    at = datetime.now(UTC)
    columns = ["event_id", "name", "timestamp", "received_at", "user_key", "user_id"]
    history = [[uuid.uuid4(), "page_view", at, at, f"anon-{tag}-{i}", ""] for i in range(3 * 8192)]
    clickhouse.insert("events", history, column_names=columns)
    clickhouse.insert(
        "events",
        [[uuid.uuid4(), "identify", at, at, user, user, browser]],
        column_names=[*columns, "anonymous_id"],
    )
    assert linked_subjects(clickhouse, user, {"events": []})[0][1].id == browser

    # What the warehouse read for it (its X-ClickHouse-Summary): not the page views. Not
    # from the query condition cache, which remembers the granules of the call above.
    read = clickhouse.query(
        CLAIMS, parameters={"u": user}, settings={"use_query_condition_cache": 0}
    ).summary
    assert int(read["read_rows"]) < len(history), read
