"""Quiet hours in each member's own zone, on the real broker and warehouse: the launch
publishes the members outside their quiet hours, defers the others, and a later poll
releases each deferred message once, when its hours have ended."""

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.client import Client

from api.queries.campaigns import CampaignFilter, definitions, outcomes
from pipeline.campaigns.launcher import launch, release_due
from pipeline.local.broker import ensure_topics
from schemas.campaigns import CAMPAIGN_COLUMNS, member_message_id
from schemas.topics import TopicSpec
from tests.shoppers import write_shoppers

MASTER = "test-pii-master-key"


async def _messages(brokers: str, topic: TopicSpec, at_least: int) -> dict[str, dict]:
    """message id → message on ``topic``, read until ``at_least`` and a quiet second."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, dict] = {}
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline, quiet_since = time.monotonic() + 30, time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    value = orjson.loads(record.value)
                    found[value["message_id"]] = value
                    quiet_since = time.monotonic()
            if len(found) >= at_least and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        await consumer.stop()
    return found


class CallsOnTheLoop:
    """The warehouse client, noting each blocking call made on the event loop's thread."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._loop_thread = threading.current_thread()
        self.on_the_loop: list[str] = []

    def __getattr__(self, name: str):
        found = getattr(self._client, name)
        if name not in ("query", "insert", "command"):
            return found

        def call(*args, **kwargs):
            if threading.current_thread() is self._loop_thread:
                self.on_the_loop.append(name)
            return found(*args, **kwargs)

        return call


async def _run(client: Client, brokers: str, topic: TopicSpec, campaign: dict, steps: list):
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await producer.start()
    watched = CallsOnTheLoop(client)
    try:
        results = []
        for name, now in steps:
            if name == "launch":
                results.append(await launch(watched, producer, topic.name, campaign, now))
            else:
                results.append(await release_due(watched, producer, topic.name, now))
        # The launcher shares its loop with the broker's client: a warehouse call that
        # blocks it stalls the producer's heartbeats and acknowledgements.
        assert watched.on_the_loop == []
        return results
    finally:
        await producer.stop()


def test_members_in_quiet_hours_get_their_message_when_those_hours_end(
    broker: str, clickhouse: Client
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    seed = 77
    shoppers = write_shoppers(
        clickhouse, 120, seed=seed, now=now, master=MASTER, prefix="quiet", consent_share=0.9
    )
    # Quiet now in Kolkata (and for members of unknown zone: the campaign's is Kolkata),
    # for two hours; New York and Berlin are 4 to 11 hours behind, outside them.
    kolkata_hour = now.astimezone(ZoneInfo("Asia/Kolkata")).hour
    campaign_id = uuid.uuid4().hex
    campaign = {
        "campaign_id": campaign_id,
        "name": "quiet hours",
        "segment_id": "s",
        "rules": orjson.dumps(
            {
                "op": "AND",
                "rules": [{"field": "user_key", "op": "contains", "value": f"quiet-{seed}-"}],
            }
        ).decode(),
        "template": "campaign",
        "product": "sneakers",
        "discount_percent": 10.0,
        "channels": ["whatsapp", "sms"],
        "holdout_share": 0.0,
        "send_at": now,
        "quiet_start": kolkata_hour,
        "quiet_end": (kolkata_hour + 2) % 24,
        "timezone": "Asia/Kolkata",
        "send_time": "as_created",
        "status": "scheduled",
        "created_at": now,
        "created_by": "test",
        "launched_at": None,
        "updated_at": now,
    }
    assert set(campaign) == set(CAMPAIGN_COLUMNS)
    client = clickhouse
    client.insert("campaigns", [[campaign[c] for c in CAMPAIGN_COLUMNS]], CAMPAIGN_COLUMNS)
    topic = TopicSpec(f"quiet-{uuid.uuid4().hex[:8]}.nudges", 4)
    asyncio.run(ensure_topics(broker, [topic]))

    reachable = {u for u in shoppers.user_keys if shoppers.consented[u] & {"whatsapp", "sms"}}
    deferred = {u for u in reachable if shoppers.timezones[u] in ("Asia/Kolkata", None)}
    immediate = reachable - deferred
    assert deferred and immediate

    def ids(users: set[str]) -> set[str]:
        return {member_message_id(campaign_id, u) for u in users}

    later = now + timedelta(hours=3)
    steps = [
        ("launch", now),
        ("release", now + timedelta(minutes=5)),  # still quiet in Kolkata
        ("release", later),
        ("release", later + timedelta(minutes=1)),  # nothing left to release
    ]
    launched, early, on_time, again = asyncio.run(_run(client, broker, topic, campaign, steps))
    assert (launched.targeted, launched.deferred) == (len(reachable), len(deferred))
    assert (early, on_time, again) == (0, len(deferred), 0)

    stored = {
        user: send_after.replace(tzinfo=UTC)
        for user, send_after in client.query(
            "SELECT user_key, send_after FROM campaign_members FINAL"
            " WHERE campaign_id = {c:String}",
            parameters={"c": campaign_id},
        ).result_rows
    }
    end_in_kolkata = (now.astimezone(ZoneInfo("Asia/Kolkata")) + timedelta(hours=2)).replace(
        minute=0, second=0
    )
    for user in deferred:
        assert stored[user] == end_in_kolkata.astimezone(UTC), user
    for user in immediate:
        assert stored[user] == now, user

    messages = asyncio.run(_messages(broker, topic, len(reachable)))
    assert set(messages) == ids(reachable), "every target exactly one message id, nobody else"
    assert {m["user_key"] for m in messages.values()} == reachable

    # As the API reads it (times as epoch ms: api/queries/campaigns.py).
    (launched_row,) = definitions(client, CampaignFilter(campaign_id, limit=1))
    assert launched_row["status"] == "launched"
    reports = {
        when: outcomes(client, [launched_row], 3600, int(when.timestamp() * 1000))[0]
        for when in (now, later)
    }
    assert reports[now]["targeted"] == len(reachable)
    assert (reports[now]["waiting"], reports[later]["waiting"]) == (len(deferred), 0)
