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
from schemas.engine_records import is_handover, read_handover, watermark_record
from schemas.erasure import ErasureList
from schemas.events import parse_event
from schemas.messages import Nudge, VipUpgrade, load_decision
from schemas.pii import MasterKey
from schemas.time import epoch_ms as ms
from schemas.tokens import TokenKeys, sign_token, verify_token
from schemas.topics import TELEMETRY_RAW

RULES = default_rules()
KEYS = TokenKeys("k1", {"k1": "a-test-secret-of-at-least-32-bytes"})
TOPICS = EngineTopics.for_namespace(None, TELEMETRY_RAW.name)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CART_TIMEOUT = timedelta(seconds=RULES.cart_rescue.timeout_s)


def engine(erasures: ErasureList | None = None) -> EngineProcessor:
    return EngineProcessor(
        RULES,
        MemoryStateStore[UserState](),
        PartitionClock(),
        TOPICS,
        lambda upgrade: sign_token(upgrade.claims(), KEYS),
        erasures,
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


def test_an_idle_partition_fires_when_its_watermark_record_is_read():
    processor = engine()
    (shopper,) = users_outside_holdout(1)
    feed(processor, [consent(T0, shopper)])
    feed(processor, [raw("add_to_cart", T0, shopper, product_id="p1", quantity=1, price=5.0)])
    assert processor.clock.next_deadline(0) == ms(T0 + CART_TIMEOUT)
    later_ms = ms(T0 + CART_TIMEOUT + timedelta(minutes=1))
    processor.mark_watermark(0, later_ms)
    ((topic, _, value, partition),) = processor.drain()
    # Marking writes a record into the partition's own log; nothing fires yet.
    assert (topic, partition) == (TOPICS.raw, 0)
    assert processor.clock.watermark(0) < later_ms
    assert processor.on_raw(0, 2, b"", value) is None
    assert [d.kind for d in decisions(processor)] == ["cart_rescue"]
    assert processor.clock.next_deadline(0) is None
    assert processor.events_processed == 2


def test_an_unreadable_watermark_record_is_a_dead_letter():
    processor = engine()
    processor.on_raw(0, 0, b"", b'{"intentflow_watermark": "soon"}')
    ((topic, _, value, _),) = processor.drain()
    assert topic == TOPICS.dlq
    assert DeadLetter.model_validate_json(value).reason == "ValueError"


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


END_MS = ms(T0 + timedelta(days=2))


def run(records: list[bytes], idle_after: set[int] = frozenset()) -> tuple[list, list[bytes]]:
    """Decisions, and the log as read: after the records numbered in ``idle_after`` the
    partition went idle and the worker wrote a watermark record (wall clock = event time
    + 2 s, minus 5 s of lateness), as a live worker does; a replay has none to add."""
    processor = engine()
    log, out = [], []

    def read(value: bytes) -> None:
        processor.on_raw(0, len(log), b"k", value)
        log.append(value)
        for topic, _, produced, _ in processor.drain():
            if topic == TOPICS.raw:
                read(produced)  # our own watermark record, read back in order
            elif topic in (TOPICS.nudges, TOPICS.vip):
                out.append(load_decision(produced))

    for number, value in enumerate(records):
        read(value)
        if number in idle_after:
            processor.mark_watermark(0, processor.clock.watermark(0) + 2_000 - 5_000)
            read_marks = processor.drain()
            for _, _, mark, _ in read_marks:
                read(mark)
    read(watermark_record(END_MS))
    return out, log


def test_a_replay_of_the_log_decides_exactly_what_the_live_run_decided():
    records = journeys(7, users_outside_holdout(60))
    idle = set(random.Random(3).sample(range(len(records)), len(records) // 4))
    live, log = run(records, idle_after=idle)
    replay, _ = run(log)
    assert len(live) > 5, "the journeys should trigger nudges"
    assert {d.kind for d in live if isinstance(d, Nudge)} >= {"cart_rescue", "high_intent"}
    assert replay == live


def test_processing_the_same_records_twice_emits_the_same_ids():
    records = journeys(11, users_outside_holdout(20))
    first, _ = run(records)
    processor = engine()
    feed(processor, records)
    feed(processor, records)  # a re-delivery after a crash
    processor.on_raw(0, len(records), b"", watermark_record(END_MS))
    assert decisions(processor) == first


def anonymous_cart_then_identify(user: str, anonymous: str) -> list[bytes]:
    cart = raw("add_to_cart", T0, anonymous, anonymous, product_id="p9", quantity=2, price=3.0)
    return [cart, raw("identify", T0 + timedelta(seconds=5), user, anonymous)]


def identity_records(processor: EngineProcessor) -> list[tuple[bytes, bytes]]:
    """Claims (on the identity topic) and hand-overs (records in the raw topic)."""
    return [
        (k, v)
        for t, k, v, _ in processor.drain()
        if t == TOPICS.identity or (t == TOPICS.raw and is_handover(v))
    ]


def kind_of(value: bytes) -> str:
    return "handover" if is_handover(value) else orjson.loads(value)["kind"]


def assert_merged(processor: EngineProcessor, user: str, anonymous: str, partition: int) -> None:
    # The hand-over is a record in the raw topic, keyed by the user: it lands in the
    # user's log and is merged when read there.
    ((topic, key, value, where),) = processor.drain()
    assert (topic, key, where) == (TOPICS.raw, user.encode(), None)
    assert read_handover(value).anonymous_id == anonymous
    assert processor.on_raw(partition, 0, key, value) is None
    assert processor.on_raw(partition, 1, key, value) is None  # re-delivered: changes nothing
    merged = processor.store.get(user, partition)
    assert list(merged.cart.items) == ["p9"] and merged.cart.items["p9"]
    assert anonymous in merged.merged


def assert_emptied_and_bound(
    processor: EngineProcessor, anonymous: str, user: str, partition: int
) -> None:
    # Handed over; what stays is a marker of the binding to the first claimant, with
    # the memory of the events folded (a re-delivery drops them) and nothing else.
    marker = processor.store.get(anonymous, partition)
    assert (marker.key, marker.user_id, marker.anonymous_id) == (anonymous, user, anonymous)
    assert marker.cart is None and not marker.products and marker.seen


def test_events_redelivered_after_a_hand_over_are_not_folded_again():
    """A crash after the hand-over was flushed, before the offsets were committed: the
    anonymous events come again. Folded into an empty state they made a second cart,
    and a rescue under the anonymous id that no replay of the log makes."""
    processor = engine()
    (user,) = users_outside_holdout(1, prefix="user-")
    anonymous = "anon-browser-4"
    records = anonymous_cart_then_identify(user, anonymous)
    for offset, value in enumerate(records):
        processor.on_raw(1, offset, anonymous.encode(), value)
    # The wall clock's watermark record came after them, then the worker died.
    processor.on_raw(1, len(records), b"", watermark_record(ms(T0 + timedelta(days=1))))
    processor.drain()
    for offset, value in enumerate(records):  # re-delivered: the cart is overdue now
        processor.on_raw(1, offset, anonymous.encode(), value)
    assert [d for d in decisions(processor) if d.user_key == anonymous] == []


def test_identify_keyed_by_the_anonymous_id_hands_the_state_over_at_once():
    processor = engine()
    (user,) = users_outside_holdout(1, prefix="user-")
    anonymous = "anon-browser-1"
    for offset, value in enumerate(anonymous_cart_then_identify(user, anonymous)):
        processor.on_raw(1, offset, anonymous.encode(), value)
    assert_emptied_and_bound(processor, anonymous, user, 1)
    assert_merged(processor, user, anonymous, partition=2)


def test_identify_keyed_by_the_user_id_claims_the_state_from_its_partition_first():
    processor = engine()
    (user,) = users_outside_holdout(1, prefix="user-")
    anonymous = "anon-browser-2"
    cart, identify = anonymous_cart_then_identify(user, anonymous)
    processor.on_raw(1, 0, anonymous.encode(), cart)
    processor.on_raw(2, 0, user.encode(), identify)  # some other producer's keying
    (claim,) = identity_records(processor)
    assert claim[0] == anonymous.encode() and kind_of(claim[1]) == "claim"
    processor.on_identity(1, 0, *claim)
    assert_emptied_and_bound(processor, anonymous, user, 1)
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


def test_an_anonymous_id_stays_with_the_user_who_claimed_it_first():
    """Issue 15 finding 2: anyone with the public write key can pair an id of theirs
    with a victim's anonymous id; that claim must hand none of the victim's state over."""
    processor = engine()
    victim, attacker = users_outside_holdout(2, prefix="user-")
    anonymous = "anon-victim"
    for offset, value in enumerate(anonymous_cart_then_identify(victim, anonymous)):
        processor.on_raw(1, offset, anonymous.encode(), value)
    assert [r[0] for r in identity_records(processor)] == [victim.encode()]
    # The victim browses on after logging out; then the forged claims come, both ways.
    later = T0 + timedelta(hours=1)
    processor.on_raw(
        1,
        10,
        anonymous.encode(),
        raw("add_to_cart", later, anonymous, anonymous, product_id="p7", quantity=1, price=5.0),
    )
    forged = raw("identify", later + timedelta(seconds=1), attacker, anonymous)
    processor.on_raw(1, 11, anonymous.encode(), forged)
    processor.on_raw(2, 0, attacker.encode(), forged)  # keyed by the attacker: a claim
    records = identity_records(processor)
    for key, value in list(records):
        if kind_of(value) == "claim":
            processor.on_identity(1, 1, key, value)
    records += identity_records(processor)
    handovers = [key for key, value in records if kind_of(value) == "handover"]
    assert handovers == []  # nothing of the victim's handed over to the attacker
    assert processor.store.get(attacker, 2) is None
    assert processor.store.get(anonymous, 1).user_id == victim
    assert "p7" in processor.store.get(anonymous, 1).cart.items


def test_erased_users_records_read_again_are_not_folded():
    """A new consumer group (or an offset reset) re-reads the raw log after an erasure."""
    processor = engine(erasures=ErasureList(MasterKey.from_secret("test-pii-master-key")))
    (shopper,) = users_outside_holdout(1)
    before = [
        consent(T0, shopper),
        raw(
            "add_to_cart",
            T0 + timedelta(seconds=1),
            shopper,
            product_id="p1",
            quantity=1,
            price=5.0,
        ),
    ]
    erase_at = T0 + timedelta(minutes=5)
    erase = {"command": "erase", "user_key": shopper, "at": int(erase_at.timestamp() * 1000)}
    processor.on_control(0, 0, shopper.encode(), orjson.dumps(erase))
    for offset, value in enumerate(before):
        assert processor.on_raw(0, offset, shopper.encode(), value) is None
    processor.on_raw(
        0, 9, b"other", raw("page_view", T0 + timedelta(hours=2), "anon-x", url="https://s/")
    )
    assert processor.store.get(shopper, 0) is None
    assert [t for t, *_ in processor.drain()] == []
    assert processor.skipped_erased == 2
    # Received after the erasure: a new history.
    back = raw(
        "add_to_cart",
        erase_at + timedelta(minutes=1),
        shopper,
        product_id="p2",
        quantity=1,
        price=5.0,
    )
    assert processor.on_raw(0, 10, shopper.encode(), back) is not None
    assert processor.store.get(shopper, 0) is not None


def test_an_erased_users_hand_over_read_again_is_dropped():
    """A hand-over record holds an anonymous state on its way to the user: re-read after
    the user's erasure, it must not bring the state back."""
    processor = engine()
    (user,) = users_outside_holdout(1, prefix="user-")
    anonymous = "anon-browser-3"
    for offset, value in enumerate(anonymous_cart_then_identify(user, anonymous)):
        processor.on_raw(1, offset, anonymous.encode(), value)
    (handover,) = identity_records(processor)
    replay = engine(erasures=ErasureList(MasterKey.from_secret("test-pii-master-key")))
    erased_at = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    erase = {"command": "erase", "user_key": user, "at": erased_at}
    replay.on_control(2, 0, user.encode(), orjson.dumps(erase))
    assert replay.on_raw(2, 0, *handover) is None
    assert replay.store.get(user, 2) is None
    assert replay.drain() == [] and replay.skipped_erased == 1
