"""The engine's record processor without a broker: real parsing, real fold, in-memory state."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from pipeline.domain.ids import in_holdout
from pipeline.domain.rules import default_rules
from pipeline.domain.state import UserState
from pipeline.engine.clock import PartitionClock
from pipeline.engine.memory_store import MemoryStateStore
from pipeline.engine.processor import EngineProcessor, EngineTopics
from schemas.deadletter import DeadLetter
from schemas.events import parse_event
from schemas.messages import Nudge, VipUpgrade, load_decision
from schemas.tokens import TokenKeys, sign_token, verify_token
from schemas.topics import TELEMETRY_RAW

RULES = default_rules()
KEYS = TokenKeys("k1", {"k1": "a-test-secret-of-at-least-32-bytes"})
TOPICS = EngineTopics.for_namespace(None, TELEMETRY_RAW.name)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CART_TIMEOUT = timedelta(seconds=RULES.cart_rescue.timeout_s)


def engine() -> EngineProcessor:
    return EngineProcessor(
        RULES,
        MemoryStateStore[UserState](),
        PartitionClock(allowed_lateness_ms=5_000),
        TOPICS,
        lambda upgrade: sign_token(upgrade.claims(), KEYS),
    )


def users_outside_holdout(count: int, prefix: str = "u") -> list[str]:
    plan = RULES.suppression
    chosen = (f"{prefix}{i}" for i in range(10_000))
    eligible = (u for u in chosen if not in_holdout(u, plan.experiment_salt, plan.holdout_share))
    return [next(eligible) for _ in range(count)]


def raw(name: str, at: datetime, user: str, anonymous: str | None = None, **properties) -> bytes:
    event = {
        "event_id": str(uuid.UUID(int=random.getrandbits(128))),
        "name": name,
        "timestamp": at.isoformat(),
        "anonymous_id": anonymous or f"anon-{user}",
        "properties": properties,
    }
    if not user.startswith("anon"):
        event["user_id"] = user
    return parse_event(event, received_at=at).to_json()


def consent(at: datetime, user: str) -> bytes:
    return raw(
        "consent",
        at,
        user,
        channel="whatsapp",
        granted=True,
        phone="+15550100001",
        purpose="marketing",
    )


def feed(processor: EngineProcessor, records: list[bytes], partition: int = 0) -> None:
    for offset, value in enumerate(records):
        processor.on_raw(partition, offset, b"k", value)


def decisions(processor: EngineProcessor) -> list:
    return [
        load_decision(v) for t, _, v, _ in processor.drain() if t in (TOPICS.nudges, TOPICS.vip)
    ]


def test_bad_records_become_dead_letters_with_the_original_bytes_and_processing_goes_on():
    processor = engine()
    (user,) = users_outside_holdout(1)
    feed(processor, [b"\xff not json", b'{"name": "x"}', raw("page_view", T0, user, url="/")])
    out = processor.drain()
    letters = [DeadLetter.model_validate_json(v) for t, _, v, _ in out if t == TOPICS.dlq]
    assert [letter.original_value() for letter in letters] == [b"\xff not json", b'{"name": "x"}']
    assert letters[1].reason == "invalid_event"
    assert {tuple(e["loc"]) for e in letters[1].errors} >= {("event_id",), ("timestamp",)}
    assert processor.events_processed == 1
    assert processor.store.get(user, 0) is not None


def test_cart_rescue_fires_when_the_partition_watermark_passes_the_deadline():
    processor = engine()
    shopper, other = users_outside_holdout(2)
    cart = [
        consent(T0, shopper),
        raw("add_to_cart", T0, shopper, product_id="p1", quantity=1, price=20.0),
    ]
    feed(processor, cart)
    # Another shopper on the same partition moves the watermark, just short of the deadline.
    feed(processor, [raw("page_view", T0 + CART_TIMEOUT - timedelta(seconds=1), other, url="/")])
    assert decisions(processor) == []
    feed(processor, [raw("page_view", T0 + CART_TIMEOUT + timedelta(seconds=1), other, url="/")])
    (nudge,) = decisions(processor)
    assert isinstance(nudge, Nudge)
    assert (nudge.kind, nudge.user_key, nudge.status) == ("cart_rescue", shopper, "emit")
    assert [item.product_id for item in nudge.items] == ["p1"]
    # Stamped with the deadline, not with when the watermark happened to pass it.
    assert nudge.triggered_at == T0 + CART_TIMEOUT


def test_idle_partition_fires_by_wall_clock_only_when_asked():
    processor = engine()
    (shopper,) = users_outside_holdout(1)
    feed(processor, [consent(T0, shopper)])
    feed(processor, [raw("add_to_cart", T0, shopper, product_id="p1", quantity=1, price=5.0)])
    later_ms = int((T0 + CART_TIMEOUT + timedelta(minutes=1)).timestamp() * 1000)
    assert decisions(processor) == []
    assert processor.clock.follow_wall_clock(later_ms) == [0]
    processor.fire_due(0)
    assert [d.kind for d in decisions(processor)] == ["cart_rescue"]


def journeys(seed: int, users: list[str]) -> list[bytes]:
    """Interleaved shopper journeys in event-time order over a few hours."""
    rng = random.Random(seed)
    random.seed(seed)
    events: list[tuple[datetime, bytes]] = []
    for user in users:
        at = T0 + timedelta(seconds=rng.randrange(0, 3 * 3600))
        events.append((at, consent(at, user)))
        for _ in range(rng.randrange(3, 12)):
            at += timedelta(seconds=rng.randrange(5, 900))
            product = f"p{rng.randrange(5)}"
            name = rng.choice(["product_view", "spec_linger", "add_to_cart", "exit_intent"])
            props = {
                "product_view": {"product_id": product},
                "spec_linger": {"product_id": product, "dwell_ms": rng.randrange(1000, 20000)},
                "add_to_cart": {"product_id": product, "quantity": 1, "price": 12.5},
                "exit_intent": {},
            }[name]
            events.append((at, raw(name, at, user, **props)))
        if rng.random() < 0.3:
            order = {"order_id": f"o-{user}", "total": 12.5, "currency": "EUR"}
            item = {"product_id": "p1", "quantity": 1, "amount": 12.5}
            events.append((at, raw("order_placed", at, user, items=[item], **order)))
    events.sort(key=lambda pair: pair[0])
    return [value for _, value in events]


def run(records: list[bytes], paced: bool) -> list:
    processor = engine()
    out = []
    for offset, value in enumerate(records):
        processor.on_raw(0, offset, b"k", value)
        if paced:
            # Live: the wall clock, a little behind event time, moves the watermark too.
            now_ms = processor.clock.watermark(0) + 2_000
            if processor.clock.follow_wall_clock(now_ms):
                processor.fire_due(0)
        out.extend(decisions(processor))
    end_ms = int((T0 + timedelta(days=2)).timestamp() * 1000)
    processor.clock.follow_wall_clock(end_ms)
    processor.fire_due(0)
    return out + decisions(processor)


def test_a_burst_replay_decides_exactly_what_the_paced_live_run_decided():
    records = journeys(7, users_outside_holdout(60))
    live = run(records, paced=True)
    replay = run(records, paced=False)
    assert len(live) > 5, "the journeys should trigger nudges"
    assert {d.kind for d in live if isinstance(d, Nudge)} >= {"cart_rescue", "high_intent"}
    assert replay == live


def test_processing_the_same_records_twice_emits_the_same_ids():
    records = journeys(11, users_outside_holdout(20))
    first = run(records, paced=False)
    processor = engine()
    feed(processor, records)
    feed(processor, records)  # a re-delivery after a crash
    processor.clock.follow_wall_clock(int((T0 + timedelta(days=2)).timestamp() * 1000))
    processor.fire_due(0)
    assert decisions(processor) == first


def anonymous_cart_then_identify(user: str, anonymous: str) -> list[bytes]:
    cart = raw("add_to_cart", T0, anonymous, anonymous, product_id="p9", quantity=2, price=3.0)
    return [cart, raw("identify", T0 + timedelta(seconds=5), user, anonymous)]


def identity_records(processor: EngineProcessor) -> list[tuple[bytes, bytes]]:
    return [(k, v) for t, k, v, _ in processor.drain() if t == TOPICS.identity]


def assert_merged(processor: EngineProcessor, user: str, anonymous: str, partition: int) -> None:
    (handover,) = identity_records(processor)
    assert handover[0] == user.encode() and orjson.loads(handover[1])["kind"] == "handover"
    processor.on_identity(partition, 0, *handover)
    processor.on_identity(partition, 1, *handover)  # re-delivered: changes nothing
    merged = processor.store.get(user, partition)
    assert list(merged.cart.items) == ["p9"] and merged.cart.items["p9"]
    assert anonymous in merged.merged


def test_identify_keyed_by_the_anonymous_id_hands_the_state_over_at_once():
    processor = engine()
    (user,) = users_outside_holdout(1, prefix="user-")
    anonymous = "anon-browser-1"
    for offset, value in enumerate(anonymous_cart_then_identify(user, anonymous)):
        processor.on_raw(1, offset, anonymous.encode(), value)
    assert processor.store.get(anonymous, 1) is None
    assert_merged(processor, user, anonymous, partition=2)


def test_identify_keyed_by_the_user_id_claims_the_state_from_its_partition_first():
    processor = engine()
    (user,) = users_outside_holdout(1, prefix="user-")
    anonymous = "anon-browser-2"
    cart, identify = anonymous_cart_then_identify(user, anonymous)
    processor.on_raw(1, 0, anonymous.encode(), cart)
    processor.on_raw(2, 0, user.encode(), identify)  # some other producer's keying
    (claim,) = identity_records(processor)
    assert claim[0] == anonymous.encode() and orjson.loads(claim[1])["kind"] == "claim"
    processor.on_identity(1, 0, *claim)
    assert processor.store.get(anonymous, 1) is None
    assert_merged(processor, user, anonymous, partition=2)


def test_third_order_issues_one_signed_vip_token():
    processor = engine()
    (user,) = users_outside_holdout(1)
    orders = [
        raw(
            "order_placed",
            T0 + timedelta(days=i),
            user,
            order_id=f"o{i}",
            items=[{"product_id": "p1", "quantity": 1, "amount": 10.0}],
            total=10.0,
            currency="EUR",
        )
        for i in range(4)
    ]
    feed(processor, [consent(T0, user), *orders])
    vip_values = [v for t, _, v, _ in processor.drain() if t == TOPICS.vip]
    assert len(vip_values) == 1
    upgrade = load_decision(vip_values[0])
    assert isinstance(upgrade, VipUpgrade)
    assert upgrade.order_count == RULES.vip.order_count
    claims = verify_token(upgrade.token, KEYS, now=T0 + timedelta(days=3))
    assert claims["jti"] == upgrade.token_id and claims["sub"] == user


def test_erase_command_removes_the_users_state_and_a_bad_command_is_dead_lettered():
    processor = engine()
    (shopper,) = users_outside_holdout(1)
    feed(processor, [raw("add_to_cart", T0, shopper, product_id="p1", quantity=1, price=5.0)])
    assert processor.clock.pending(0) == 1
    processor.drain()
    erase = orjson.dumps({"command": "erase", "user_key": shopper})
    processor.on_control(0, 0, shopper.encode(), erase)
    processor.on_control(0, 1, shopper.encode(), b'{"command": "explode"}')
    assert processor.store.get(shopper, 0) is None
    assert processor.clock.pending(0) == 0
    (letter,) = [DeadLetter.model_validate_json(v) for t, _, v, _ in processor.drain()]
    assert (letter.source_topic, letter.offset, letter.reason) == (TOPICS.control, 1, "ValueError")
