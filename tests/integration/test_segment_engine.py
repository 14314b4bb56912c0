"""Carts built through the real Segment and RudderStack SDKs earn a cart rescue from the
engine; an order sent through the SDK with the server key before the deadline means none.

The API (collector) and a real worker process on the real broker; the rules' cart
deadline is a few seconds and quiet hours are off, so nothing depends on the time of day.
"""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.client import Client
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from api.producer import partition_for
from pipeline.domain import rules as rules_module
from pipeline.domain.ids import in_holdout
from pipeline.domain.rules import default_rules
from schemas.messages import Nudge, load_decision
from schemas.topics import DEFAULT_USER_PARTITIONS, NUDGES
from tests import support
from tests.collector_server import SERVER_KEY, WRITE_KEY, collector_settings, running_api

TIMEOUT_S = 4
RULES = default_rules()


def fast_rules(tmp: Path) -> Path:
    rules = yaml.safe_load(Path(rules_module.__file__).with_name("default_rules.yaml").read_text())
    rules["version"] = f"segment-fast-{uuid.uuid4().hex[:6]}"
    rules["cart_rescue"].update(
        timeout_s=TIMEOUT_S, exit_intent_grace_s=1, checkout_timeout_s=TIMEOUT_S
    )
    rules["suppression"].pop("quiet_hours", None)
    path = tmp / "fast.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def shopper(name: str) -> str:
    plan = RULES.suppression
    for _ in range(1000):
        candidate = f"{name}-{uuid.uuid4().hex[:8]}"
        if not in_holdout(candidate, plan.experiment_salt, plan.holdout_share):
            return candidate
    raise AssertionError("no user outside the holdout")


async def nudges_for(brokers: str, users: set[str], until, timeout_s: float) -> list[Nudge]:
    consumer = AIOKafkaConsumer(
        NUDGES.name, bootstrap_servers=brokers, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Nudge] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(found):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    decision = load_decision(record.value)
                    if isinstance(decision, Nudge) and decision.user_key in users:
                        found.append(decision)
    finally:
        await consumer.stop()
    return found


def partition_of(user: str) -> int:
    """The raw topic's partition of a shopper's events (keyed by their user id)."""
    return partition_for(user.encode(), DEFAULT_USER_PARTITIONS)


def consent(client, user: str, anon: str) -> None:
    # Our consent event, sent as a Segment track named "consent".
    client.track(
        user_id=user,
        anonymous_id=anon,
        event="consent",
        properties={
            "channel": "whatsapp",
            "granted": True,
            "purpose": "marketing",
            "phone": "+15550100042",
        },
    )


def test_sdk_carts_earn_a_rescue_and_an_sdk_order_prevents_it(
    broker: str, warehouse: str, clickhouse: Client, tmp_path: Path
):
    app_id = f"segment-engine-{uuid.uuid4().hex[:6]}"
    env = support.process_env(
        app_id=app_id,
        kafka_brokers=broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        data_dir=str(tmp_path / "data"),
        rules=str(fast_rules(tmp_path)),
        wall_clock_watermark="true",
        allowed_lateness_s="0.5",
        log_level="warning",
    )
    worker = support.python_process(
        "worker", ["-m", "pipeline.cli", "worker"], tmp_path / "w.log", env
    )
    settings = collector_settings(
        broker, clickhouse_url=warehouse, clickhouse_database=clickhouse.database
    )
    abandoner, buyer = shopper("seg-abandon"), shopper("seg-buyer")
    worker.start()
    try:
        with running_api(settings) as api:
            host = f"{api}/segment"
            browser = SegmentClient(WRITE_KEY, host=host, sync_mode=True, max_retries=0)
            rudder = RudderClient(WRITE_KEY, host=host, sync_mode=True)  # gzip on
            store = SegmentClient(SERVER_KEY, host=host, sync_mode=True, max_retries=0)
            line = {"product_id": "p-seg", "name": "Lamp", "price": 30.0, "quantity": 1}

            # The abandoner: a browser SDK's cart, its add sent twice with one messageId
            # (what a client's retry of an unanswered batch looks like on the wire).
            anon = f"anon-{abandoner}"
            consent(browser, abandoner, anon)
            browser.track(
                user_id=abandoner, anonymous_id=anon, event="Product Viewed", properties=line
            )
            # A resend is the same message (id and timestamp) in a new request (sentAt).
            added, added_at = str(uuid.uuid4()), datetime.now(UTC)
            for _ in range(2):
                rudder.track(
                    user_id=abandoner,
                    anonymous_id=anon,
                    event="Product Added",
                    properties=line,
                    message_id=added,
                    timestamp=added_at,
                )
                time.sleep(0.3)

            # The buyer: the same cart, then the store backend's order (server key).
            anon_b = f"anon-{buyer}"
            consent(browser, buyer, anon_b)
            rudder.track(user_id=buyer, anonymous_id=anon_b, event="Product Added", properties=line)
            store.track(
                user_id=buyer,
                anonymous_id=anon_b,
                event="Order Completed",
                properties={
                    "order_id": f"o-{buyer}",
                    "total": 30.0,
                    "currency": "EUR",
                    "products": [line],
                },
            )
            # A sentinel on the buyer's partition leaves a cart after the buyer's order:
            # once its rescue is decided there, that partition's watermark has passed any
            # deadline the buyer's cart could have had (deadlines fire in order).
            sentinel = next(
                candidate
                for candidate in (shopper("seg-sentinel") for _ in range(1000))
                if partition_of(candidate) == partition_of(buyer)
            )
            anon_s = f"anon-{sentinel}"
            consent(browser, sentinel, anon_s)
            rudder.track(
                user_id=sentinel, anonymous_id=anon_s, event="Product Added", properties=line
            )
            found = asyncio.run(
                nudges_for(
                    broker,
                    {abandoner, buyer, sentinel},
                    lambda f: {abandoner, sentinel} <= {n.user_key for n in f},
                    timeout_s=90,
                )
            )

            # Both deliveries of the add were read before the rescue was decided; the
            # events table keeps one row per event_id and time (ReplacingMergeTree,
            # read with FINAL or uniqExact as the metrics do;
            # schemas/migrations/0001_events.sql): it counts once.
            def added_rows(final: str = "") -> int:
                query = f"SELECT count() FROM events {final} WHERE event_id = {{id:UUID}}"
                return clickhouse.command(query, parameters={"id": added})

            support.wait_for(lambda: added_rows() >= 1, 60, "the add in the warehouse")
            rows = added_rows("FINAL")
            found = asyncio.run(
                nudges_for(broker, {abandoner, buyer}, lambda f: False, timeout_s=3)
            )  # read again: everything published by now
    finally:
        worker.stop(15)
    log = (tmp_path / "w.log").read_text()
    assert "Traceback" not in log, log[-3000:]

    assert [(n.user_key, n.kind, n.status) for n in found] == [(abandoner, "cart_rescue", "emit")]
    (rescue,) = found
    # The resent add counted once: one lamp in the cart, not two.
    assert [(i.product_id, i.quantity) for i in rescue.items] == [("p-seg", 1)]
    assert rows == 1
