"""A backlog on the real broker: a source catching up after an outage, in one live worker.

Hundreds of journeys of yesterday arrive back to back in event-time order, at a
back-fill's pace: a cart, then later in the backlog an order or an emptied cart
for most of them. While the partitions catch up only event time may move their
watermarks; if the wall clock moved them, every cart folded so far would be
"abandoned" at once, before its order is read (issue: rescues sent to shoppers
who had bought). Then the replay of the log, watermark records included, must
make exactly the live decisions.
"""

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.domain import rules as rules_module
from pipeline.domain.rules import default_rules
from pipeline.engine.processor import EngineTopics
from pipeline.local.broker import ensure_topics
from pipeline.replay.recorded import RecordedEvent, event_time_ms
from pipeline.replay.runner import ReplayRunner
from schemas.engine_records import is_watermark
from schemas.messages import Nudge, load_decision
from schemas.topics import IDENTITY, NUDGES, TELEMETRY_DLQ, VIP, TopicSpec, namespaced
from tests import support
from tests.integration.test_engine import collect, event, running_worker

NAMESPACE = "backlog"
SOURCE = f"{NAMESPACE}.telemetry.raw"
JOURNEYS = 360
# A back-fill's pace: fast enough to be a backlog, slow enough that the worker's
# wall-clock timer runs many times while it catches up.
EVENTS_PER_S = 300
RULES = default_rules()
CART_TIMEOUT = timedelta(seconds=RULES.cart_rescue.timeout_s)
# What the collector leaves of a phone (it seals it before producing).
SEALED_PHONE = {"phone_ref": "test-ref", "phone_masked": "+1 ******0077"}


def backlog(start: datetime, seed: int = 5) -> tuple[list[tuple[datetime, str, bytes]], dict]:
    """(event time, key, record) in event-time order; each user's journey's ending."""
    rng = random.Random(seed)
    endings = {}
    timeline = []
    cart = {"product_id": "p1", "quantity": 1, "price": 20.0}
    order = {
        "items": [{"product_id": "p1", "quantity": 1, "amount": 20.0}],
        "total": 20.0,
        "currency": "EUR",
    }
    for n in range(JOURNEYS):
        user = f"backlog-{n}-{uuid.uuid4().hex[:6]}"
        ending = ("ordered", "emptied", "abandoned")[n % 3]
        endings[user] = ending
        at = start + timedelta(seconds=rng.randrange(0, 4 * 3600))
        steps = [
            (
                at,
                "consent",
                {"channel": "whatsapp", "granted": True, "purpose": "marketing", **SEALED_PHONE},
            ),
            (at + timedelta(seconds=30), "add_to_cart", cart),
        ]
        later = at + timedelta(seconds=30) + CART_TIMEOUT * rng.uniform(0.2, 0.9)
        if ending == "ordered":
            steps.append((later, "order_placed", {"order_id": f"o-{user}", **order}))
        elif ending == "emptied":
            steps.append(
                (later, "remove_from_cart", {"product_id": "p1", "quantity": 1, "price": 20.0})
            )
        for moment, name, properties in steps:
            timeline.append((moment, user, event(name, moment, user, f"anon-{user}", **properties)))
    timeline.sort(key=lambda item: item[0])
    return timeline, endings


async def produce_paced(brokers: str, records: list[tuple[datetime, str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5)
    await producer.start()
    try:
        began = time.monotonic()
        for number, (_, key, value) in enumerate(records):
            await asyncio.sleep(max(0.0, began + number / EVENTS_PER_S - time.monotonic()))
            await producer.send(SOURCE, value, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_log(brokers: str) -> list[RecordedEvent]:
    """The whole raw topic as a replay reads it: each partition in offset order."""
    consumer = AIOKafkaConsumer(SOURCE, bootstrap_servers=brokers, auto_offset_reset="earliest")
    await consumer.start()
    records: list[RecordedEvent] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 2:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, messages in batch.items():
                quiet_since = time.monotonic()
                for m in messages:
                    moment = event_time_ms(orjson.loads(m.value)) or 0
                    records.append(
                        RecordedEvent(tp.partition, m.offset, m.key, m.value, moment, moment)
                    )
    finally:
        await consumer.stop()
    return records


@pytest.mark.timeout(240)
def test_a_backlog_rescues_only_the_carts_nobody_resolved(broker: str, tmp_path: Path):
    start = (datetime.now(UTC) - timedelta(days=1)).replace(hour=9, minute=0, second=0)
    records, endings = backlog(start)
    specs = [TopicSpec(SOURCE, 4)] + [
        namespaced(spec, NAMESPACE) for spec in (NUDGES, VIP, IDENTITY, TELEMETRY_DLQ)
    ]
    asyncio.run(ensure_topics(broker, specs))
    rules = Path(rules_module.__file__).with_name("default_rules.yaml")
    with running_worker(tmp_path, broker, NAMESPACE, rules, live=True):
        # The outage is over: the worker is up and assigned when the source catches up.
        probe = start - timedelta(hours=1)
        warm_up = [(probe, "probe", event("page_view", probe, None, "probe", url="/"))]
        asyncio.run(produce_paced(broker, warm_up))
        support.wait_for(
            lambda: support.committed_count(broker, f"intentflow.{NAMESPACE}", [SOURCE]) >= 1,
            60,
            "the worker assigned and reading",
            interval_s=0.5,
        )
        asyncio.run(produce_paced(broker, records))
        # The backlog's last carts fire once the partitions are idle, by watermark records.
        found = asyncio.run(collect(broker, [f"{NAMESPACE}.nudges"], settle_s=6, timeout_s=120))
    decisions = [load_decision(value) for value in found]
    rescues = [d for d in decisions if isinstance(d, Nudge) and d.kind == "cart_rescue"]

    wrong = [r for r in rescues if endings[r.user_key] != "abandoned"]
    assert wrong == [], f"{len(wrong)} rescues for carts that were bought or emptied"
    abandoned = {u for u, ending in endings.items() if ending == "abandoned"}
    decided = {r.user_key: r for r in rescues}
    assert set(decided) == abandoned, "every abandoned cart has exactly one recorded decision"
    assert len(rescues) == len(abandoned)
    for rescue in rescues:
        assert rescue.status == "emit" or rescue.reason == "holdout", rescue

    # The log holds the watermark records the idle worker wrote; replaying it makes
    # exactly the live decisions.
    log = asyncio.run(read_log(broker))
    assert any(is_watermark(r.value) for r in log)
    runner = ReplayRunner(RULES, 4, EngineTopics.for_namespace("replay", SOURCE))
    for partition in range(4):
        runner.feed(sorted((r for r in log if r.partition == partition), key=lambda r: r.offset))
    replayed = [
        load_decision(value)
        for topic, _, value, _ in runner.take_outputs()
        if topic.endswith(".nudges")
    ]
    assert sorted(d.model_dump_json() for d in replayed) == sorted(
        d.model_dump_json() for d in decisions
    )
