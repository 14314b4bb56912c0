"""The score agent end to end on the real broker, in real worker processes.

Scripted journeys are produced paced in real time to a live worker (whose
watermark follows the wall clock); the very same records are then replayed in
one burst to a worker whose watermark only event time moves. Both must emit
exactly the expected decisions, with the same ids.
"""

import asyncio
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.domain import rules as rules_module
from pipeline.domain.ids import in_holdout
from pipeline.domain.rules import default_rules
from pipeline.local.broker import ensure_topics
from schemas.events import load_event, parse_event
from schemas.messages import Nudge, VipUpgrade, load_decision
from schemas.tokens import TokenKeys, verify_token
from schemas.topics import IDENTITY, NUDGES, TELEMETRY_DLQ, VIP, TopicSpec, namespaced
from tests import support

TIMEOUT_S, GRACE_S = 4, 1
RULES = default_rules()
SALT = RULES.suppression.experiment_salt


@pytest.fixture(scope="module")
def fast_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default rules with deadlines short enough to watch them fire live."""
    rules = yaml.safe_load(Path(rules_module.__file__).with_name("default_rules.yaml").read_text())
    rules["version"] = "test-fast-1"
    rules["cart_rescue"].update(
        timeout_s=TIMEOUT_S, exit_intent_grace_s=GRACE_S, checkout_timeout_s=TIMEOUT_S
    )
    rules["suppression"].pop("quiet_hours", None)
    rules["suppression"]["frequency_cap_per_day"] = 10
    path = tmp_path_factory.mktemp("rules") / "fast.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def user(name: str, holdout: bool = False) -> str:
    """A user id named for its journey, inside or outside the holdout as asked."""
    for i in range(10_000):
        candidate = f"{name}-{i}"
        if in_holdout(candidate, SALT, RULES.suppression.holdout_share) == holdout:
            return candidate
    raise AssertionError("no such user")


def event(name: str, at: datetime, user_id: str | None, anonymous_id: str, **props) -> bytes:
    raw = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": at.isoformat(),
        "anonymous_id": anonymous_id,
        "properties": props,
    }
    if user_id:
        raw["user_id"] = user_id
    return parse_event(raw, received_at=at).to_json()


def journeys(start: datetime) -> tuple[list[tuple[float, str, bytes]], dict[str, str]]:
    """(offset seconds, key, record) in time order, and each journey's user key."""
    users = {
        "browse": user("browse"),
        "abandon": user("abandon"),
        "order": user("order"),
        "exit": user("exit"),
        "vip": user("vip"),
        "identify": user("identify"),
        "no_consent": user("noconsent"),
        "holdout": user("holdout", holdout=True),
    }
    anonymous_browser = f"anon-{uuid.uuid4().hex[:8]}"
    plan: list[tuple[float, str, str | None, str, dict]] = []

    def at(offset: float, name: str, who: str | None, anonymous: str | None = None, **props):
        plan.append((offset, name, who, anonymous or f"anon-{who}", props))

    cart = {"product_id": "p1", "quantity": 1, "price": 25.0}
    phone = {"granted": True, "phone": "+15550100042", "purpose": "marketing"}
    for journey in ("browse", "abandon", "order", "exit", "vip", "identify", "holdout"):
        at(0.0, "consent", users[journey], channel="whatsapp", **phone)
    at(0.1, "page_view", users["browse"], url="https://shop.test/")
    at(0.3, "product_view", users["browse"], product_id="p1")
    for journey in ("abandon", "order", "exit", "no_consent", "holdout"):
        at(0.5, "product_view", users[journey], product_id="p1")
        at(0.7, "add_to_cart", users[journey], **cart)
    at(1.0, "exit_intent", users["exit"])
    order = {
        "items": [{"product_id": "p1", "quantity": 1, "amount": 25.0}],
        "total": 25.0,
        "currency": "EUR",
    }
    at(1.5, "order_placed", users["order"], order_id="o-1", **order)
    for n in range(3):
        at(0.2 + n * 0.2, "order_placed", users["vip"], order_id=f"v-{n}", **order)
    at(0.2, "add_to_cart", None, anonymous_browser, **cart)
    at(0.9, "identify", users["identify"], anonymous_browser, traits={})
    records = []
    for offset, name, who, anonymous, props in sorted(plan, key=lambda p: p[0]):
        moment = start + timedelta(seconds=offset)
        value = event(name, moment, who, anonymous, **props)
        records.append((offset, load_event(value).key, value))  # keyed as the collector keys
    return records, {**users, "anonymous_browser": anonymous_browser}


@contextmanager
def running_worker(
    tmp: Path, brokers: str, namespace: str, rules: Path, live: bool
) -> Iterator[None]:
    env = support.process_env(
        kafka_brokers=brokers,
        data_dir=str(tmp / namespace),
        namespace=namespace,
        source_topic=f"{namespace}.telemetry.raw",
        rules=str(rules),
        wall_clock_watermark="true" if live else "false",
        allowed_lateness_s="0.5",
    )
    process = support.python_process(
        "worker", ["-m", "pipeline.cli", "worker"], tmp / f"{namespace}.log", env
    )
    process.start()
    try:
        yield process
    finally:
        process.stop(15)
        assert "Traceback" not in (tmp / f"{namespace}.log").read_text(), process.log_tail(40)


async def produce(brokers: str, topic: str, records, paced: bool, start_mono: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=2)
    await producer.start()
    try:
        for offset, key, value in records:
            if paced:
                await asyncio.sleep(max(0.0, start_mono + offset - time.monotonic()))
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def collect(
    brokers: str, topics: list[str], settle_s: float, timeout_s: float
) -> list[bytes]:
    """Every record on ``topics`` once nothing new has arrived for ``settle_s``."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=brokers, auto_offset_reset="earliest")
    await consumer.start()
    found: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            new = [m.value for messages in batch.values() for m in messages]
            if new:
                found.extend(new)
                quiet_since = time.monotonic()
            elif found and time.monotonic() - quiet_since > settle_s:
                break
    finally:
        await consumer.stop()
    return found


async def run_namespace(brokers, tmp, namespace, rules, records, live) -> list:
    specs = [TopicSpec(f"{namespace}.telemetry.raw", 4)] + [
        namespaced(spec, namespace) for spec in (NUDGES, VIP, IDENTITY, TELEMETRY_DLQ)
    ]
    await ensure_topics(brokers, specs)
    with running_worker(tmp, brokers, namespace, rules, live):
        await asyncio.sleep(0)  # the worker joins its group while we produce
        await produce(
            brokers, f"{namespace}.telemetry.raw", records, paced=live, start_mono=time.monotonic()
        )
        out = await collect(
            brokers,
            [f"{namespace}.nudges", f"{namespace}.vip"],
            settle_s=TIMEOUT_S + 3,
            timeout_s=90,
        )
    return sorted((load_decision(v) for v in out), key=lambda d: d.model_dump_json())


def test_scripted_journeys_live_and_burst_replay(broker: str, tmp_path: Path, fast_rules: Path):
    start = datetime.now(UTC) + timedelta(seconds=15)  # the live worker needs time to join
    records, users = journeys(start)
    # Burst replay: the last record moves every partition's watermark past all deadlines.
    sentinels = [
        (
            60.0,
            f"sentinel-{p}",
            event("page_view", start + timedelta(minutes=5), None, f"sentinel-{p}", url="/"),
        )
        for p in range(24)
    ]
    live_records = [(offset + 15, key, value) for offset, key, value in records]
    live = asyncio.run(run_namespace(broker, tmp_path, "live", fast_rules, live_records, live=True))
    replay = asyncio.run(
        run_namespace(broker, tmp_path, "burst", fast_rules, records + sentinels, live=False)
    )

    nudges = [d for d in live if isinstance(d, Nudge)]
    by_user = {(n.user_key, n.kind, n.status, n.reason) for n in nudges}
    assert by_user == {
        (users["abandon"], "cart_rescue", "emit", None),
        (users["exit"], "cart_rescue", "emit", None),
        (users["identify"], "cart_rescue", "emit", None),
        (users["no_consent"], "cart_rescue", "suppressed", "no_consent"),
        (users["holdout"], "cart_rescue", "suppressed", "holdout"),
    }
    assert len(nudges) == 5, "one decision per journey, none repeated"
    exit_rescue = next(n for n in nudges if n.user_key == users["exit"])
    # Exit intent brought the deadline forward to the grace period (times are in ms).
    expected = start + timedelta(seconds=1.0 + GRACE_S)
    assert abs(exit_rescue.triggered_at - expected) < timedelta(milliseconds=1)
    (upgrade,) = [d for d in live if isinstance(d, VipUpgrade)]
    assert upgrade.user_key == users["vip"] and upgrade.order_count == 3
    # The anonymous browser's cart was rescued once, for the identified user.
    assert not any(n.user_key == users["anonymous_browser"] for n in nudges)

    # The same records in one burst, where only event time moves the watermark.
    diff = differences(live, replay)
    assert diff == [], "\n".join(diff)
    assert replay == live
    token_keys = TokenKeys("k1", {"k1": "test-token-secret-of-at-least-32-bytes"})
    assert verify_token_of(broker, "live", token_keys)["sub"] == users["vip"]


def verify_token_of(brokers: str, namespace: str, keys: TokenKeys) -> dict:
    (record,) = asyncio.run(collect(brokers, [f"{namespace}.vip"], settle_s=0.5, timeout_s=10))
    return verify_token(orjson.loads(record)["token"], keys, now=datetime.now(UTC))


def differences(live: list, replay: list) -> list[str]:
    """Field-level differences between two decision lists, for a readable failure."""
    keyed = {}
    for run, decisions in (("live", live), ("replay", replay)):
        for d in decisions:
            dump = d.model_dump(mode="json")
            keyed.setdefault((d.user_key, type(d).__name__), {})[run] = dump
    found = []
    for key, runs in sorted(keyed.items()):
        a, b = runs.get("live"), runs.get("replay")
        if a is None or b is None:
            found.append(f"{key}: only in {'replay' if a is None else 'live'}")
            continue
        found += [f"{key}.{f}: {a[f]!r} != {b.get(f)!r}" for f in a if a[f] != b.get(f)]
    return found


def test_state_survives_a_killed_worker_whose_rocksdb_is_wiped(
    broker: str, tmp_path: Path, fast_rules: Path
):
    """Two orders, SIGKILL, RocksDB deleted, restart, third order: exactly one VIP.

    The first two orders are only in the state, and the state comes back only
    through the changelog records the write-behind store produced, replayed by
    Faust's recovery.
    """
    namespace = "restart"
    source = f"{namespace}.telemetry.raw"
    specs = [TopicSpec(source, 4)] + [
        namespaced(spec, namespace) for spec in (NUDGES, VIP, IDENTITY, TELEMETRY_DLQ)
    ]
    asyncio.run(ensure_topics(broker, specs))
    shopper = user("restart")
    start = datetime.now(UTC) - timedelta(hours=1)
    order = {"items": [{"product_id": "p1", "quantity": 1, "amount": 5.0}], "total": 5.0}

    def placed(n: int) -> tuple[float, str, bytes]:
        at = start + timedelta(minutes=n)
        value = event(
            "order_placed",
            at,
            shopper,
            f"anon-{shopper}",
            order_id=f"r{n}",
            currency="EUR",
            **order,
        )
        return (0.0, shopper, value)

    first_two = [placed(0), placed(1)]
    with running_worker(tmp_path, broker, namespace, fast_rules, live=False) as worker:
        asyncio.run(produce(broker, source, first_two, paced=False, start_mono=0))
        support.wait_for(
            lambda: support.committed_count(broker, f"intentflow.{namespace}", [source]) >= 2,
            60,
            "the first two orders committed",
        )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.stop(5)
    shutil.rmtree(tmp_path / namespace / "faust")
    with running_worker(tmp_path, broker, namespace, fast_rules, live=False):
        asyncio.run(produce(broker, source, [placed(2)], paced=False, start_mono=0))
        # The restarted worker waits out the killed member's session, then recovers.
        found = asyncio.run(collect(broker, [f"{namespace}.vip"], settle_s=3, timeout_s=120))
        log = (tmp_path / f"{namespace}.log").read_text()
    upgrades = [load_decision(value) for value in found]
    assert [(u.user_key, u.order_count) for u in upgrades] == [(shopper, 3)], (
        [(u.user_key, u.order_count) for u in upgrades],
        log[-2000:],
    )
