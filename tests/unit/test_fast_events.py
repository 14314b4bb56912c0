"""The fast read of our own records (schemas/fast_events.py) equals ``load_event``.

For every generated record: when ``load_event`` rejects it, the fast path does not
take it (the error and the dead letter are pydantic's); when it accepts it, the fast
read has the same values, and records in canonical form (``Event.to_json``) take
the fast path.
"""

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.sink.rows import event_rows
from schemas.events import (
    PROPERTY_MODELS,
    STANDARD_EVENTS,
    Campaign,
    Context,
    Event,
    EventError,
    OrderItem,
    Page,
    load_event,
    parse_event,
)
from schemas.fast_events import (
    _CANONICAL,
    _ITEM_FIELDS,
    FastCampaign,
    FastContext,
    FastEvent,
    FastPage,
    _fast,
    _Wire,
    fast_load_event,
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

FIELDS = (
    "event_id",
    "name",
    "timestamp",
    "anonymous_id",
    "user_id",
    "session_id",
    "received_at",
    "ip",
    "from_server",
    "key",
    "ts_ms",
    "utm_message_id",
)


def assert_same(fast: FastEvent | Event, slow: Event) -> None:
    for name in FIELDS:
        assert getattr(fast, name) == getattr(slow, name), name
    for name in ("timestamp", "received_at"):
        assert getattr(fast, name).utcoffset() == getattr(slow, name).utcoffset(), name
    # Same values, same order (the sink writes properties as they are).
    assert fast.properties == slow.properties
    assert orjson.dumps(fast.properties) == orjson.dumps(slow.properties)
    context = fast.context
    if isinstance(context, msgspec.Struct):
        assert msgspec.to_builtins(context) == slow.context.model_dump(mode="json")
    else:
        assert context == slow.context


# --- generated records -----------------------------------------------------------

# Mostly well-formed values, with edges on both sides of each rule.
TEXT = st.one_of(
    st.sampled_from(["p1", "shoes", "x" * 256, "x" * 257, "", "a\n", "é", "Europe/Berlin"]),
    st.text(max_size=8),
)
NUMBER = st.one_of(
    st.sampled_from([0, 1, 2, 19.9, 20.0, -1, -0.0, 0.5, 100, 100.0, 101, 10_000, 10_001]),
    st.integers(-5, 200_000),
    st.floats(-1, 1e6, allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.just("3"),
)
VALUE = st.one_of(TEXT, NUMBER, st.lists(st.integers(0, 3), max_size=2), st.just({"a": None}))
KEYS = [
    "url",
    "product_id",
    "category",
    "price",
    "dwell_ms",
    "percentage",
    "query",
    "quantity",
    "element_id",
    "text",
    "old_price",
    "new_price",
    "order_id",
    "total",
    "currency",
    "traits",
    "channel",
    "granted",
    "purpose",
    "phone",
    "phone_ref",
    "phone_masked",
    "items",
    "extra",
]
ITEM = st.dictionaries(
    st.sampled_from(["product_id", "quantity", "amount", "tax", "discount", "category", "x"]),
    st.one_of(TEXT, NUMBER),
    max_size=7,
)
SPECIAL = {
    "currency": st.sampled_from(["EUR", "eur", "EURO"]),
    "channel": st.sampled_from(["whatsapp", "sms", "email", "fax"]),
    "purpose": st.sampled_from(["marketing", "transactional", "other", None]),
    "phone": st.sampled_from(["+491511234567", "0151", "+49151123456\n"]),
    "granted": st.sampled_from([True, False, 1, "yes"]),
    "traits": st.one_of(st.dictionaries(st.sampled_from("ab"), VALUE, max_size=2), st.none()),
    "items": st.lists(ITEM, max_size=2),
}
NAMES = [
    "page_view",
    "product_view",
    "spec_linger",
    "deep_scroll",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "order_placed",
    "exit_intent",
    "button_click",
    "price_drop",
    "identify",
    "consent",
    "wishlist_add",
    "Bad-Name",
    "page_view\n",  # Python's `$` would take it, pydantic's does not
]


@st.composite
def properties(draw: Any) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True))
    return {key: draw(SPECIAL.get(key, VALUE)) for key in keys}


@st.composite
def valid_properties(draw: Any, name: str, changes: int = 2) -> dict[str, Any]:
    """A storefront's properties for the event, some changed or added."""
    import random

    from benchmarks.fold import _properties

    props = _properties(name, random.Random(draw(st.integers(0, 99))), "p1")
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=changes)):
        props[key] = draw(SPECIAL.get(key, VALUE))
    return props


PROPERTIES = st.one_of(properties(), *(valid_properties(name) for name in NAMES))


@st.composite
def stamps(
    draw: Any, low: datetime = datetime(2020, 1, 1), high: datetime = datetime(2030, 1, 1)
) -> str:
    moment = draw(st.datetimes(low, high))
    separator = draw(st.sampled_from(["T", "T", " ", "t"]))
    seconds = draw(st.sampled_from([":%S", ":%S", ""]))
    fraction = draw(st.sampled_from(["", ".5", ".25", ".123", ".123456", ".1234567"]))
    zone = draw(st.sampled_from(["Z", "+00:00", "+01:00", "-05:30", "+14:59", "+24:00", "", "z"]))
    return moment.strftime(f"%Y-%m-%d{separator}%H:%M{seconds}") + fraction + zone


@st.composite
def raw_events(draw: Any) -> dict[str, Any]:
    """Events as clients send them: half of them clean (valid but for edge values)."""
    name = draw(st.sampled_from(NAMES))
    clean = draw(st.booleans())
    received = datetime(2025, 11, 20, 12, tzinfo=UTC)
    ids = [st.uuids().map(str), st.uuids().map(lambda u: u.hex)]
    event: dict[str, Any] = {
        "event_id": draw(st.one_of(*ids, *([] if clean else [st.just("nope")]))),
        "name": name,
        "timestamp": draw(
            st.one_of(
                st.just("2025-11-20T11:59:59.5Z"),
                stamps(datetime(2025, 11, 19), datetime(2025, 11, 20)),
                *([] if clean else [st.just("2025-11-22T12:00:00Z"), stamps()]),
            )
        ),
        "anonymous_id": draw(st.sampled_from(["anon-1", "a b"]) if clean else TEXT),
        "properties": draw(valid_properties(name, 0 if clean else 2) if clean else PROPERTIES),
    }
    text = st.sampled_from(["x", "Europe/Berlin", "é" * 256]) if clean else TEXT
    for field, values in {
        "user_id": st.one_of(st.just("user-1"), st.none(), text),
        "session_id": st.one_of(st.just("s1"), text),
        "context": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "timezone": text,
                    "device": st.sampled_from(["desktop", "mobile" if clean else "phone"]),
                    "country": st.sampled_from(["DE", "US"] if clean else ["de", "DE\n"]),
                    "page": st.fixed_dictionaries(
                        {}, optional={"url": text, **({} if clean else {"x": text})}
                    ),
                    "campaign": st.fixed_dictionaries({}, optional={"utm_message_id": text}),
                },
            ),
            st.just({"timezone": None} if clean else {"nope": 1}),
        ),
        "ip": st.sampled_from(["203.0.113.7", "203.0.113.0", "2001:db8::1", "", "junk"]),
        "from_server": st.sampled_from([True, False] if clean else [True, "yes"]),
    }.items():
        if draw(st.booleans()):
            event[field] = draw(values)
    if not clean and draw(st.integers(0, 3)) == 0:
        event["extra"] = 1
    if clean and name == "identify":
        event["user_id"] = "user-1"
    received_at = draw(
        st.one_of(
            st.just(received.isoformat()),
            st.just(received.isoformat().replace("+00:00", "Z")),
            *([] if clean else [st.just("2025-11-20T12:00:00"), stamps()]),
        )
    )
    if clean or draw(st.integers(0, 9)):
        event["received_at"] = received_at
    return event


def check(data: bytes) -> str:
    """Compare both reads of one record; says which way it went."""
    try:
        slow = load_event(data)
    except EventError as exc:
        assert _fast(data) is None
        with pytest.raises(EventError) as caught:
            fast_load_event(data)
        assert caught.value.errors == exc.errors
        return "invalid"
    fast = fast_load_event(data)
    assert_same(fast, slow)
    # The live worker hands the event it read to the warehouse sink: the same rows.
    assert event_rows(fast) == event_rows(slow)
    return "fast" if _fast(data) is not None else "fallback"


@SETTINGS
@given(raw_events())
def test_any_record_reads_as_load_event_reads_it(raw: dict[str, Any]) -> None:
    event(check(orjson.dumps(raw)))


@SETTINGS
@given(raw_events())
def test_our_own_records_take_the_fast_path_with_the_same_values(raw: dict[str, Any]) -> None:
    received = datetime(2025, 11, 20, 12, tzinfo=UTC)
    try:
        event = parse_event(raw, received_at=received, ip=raw.get("ip"))
    except EventError:
        return
    data = event.to_json()
    # Nested extras are left to pydantic (what its dump does to them is not mirrored).
    nested = {k for k, v in event.properties.items() if isinstance(v, list | dict)}
    traits = event.properties.get("traits") if event.name == "identify" else {}
    allowed = {"order_placed": {"items"}, "identify": {"traits"}}.get(event.name, set())
    mirrored = nested <= allowed and not any(
        isinstance(v, list | dict) for v in (traits or {}).values()
    )
    expected = "fast" if mirrored or event.name not in STANDARD_EVENTS else "fallback"
    assert check(data) == expected, data


def test_a_record_of_each_standard_kind_takes_the_fast_path() -> None:
    from benchmarks.fold import make_events

    events, records = make_events(300, 20)
    assert {e.name for e in events} >= {"order_placed", "consent", "identify", "add_to_cart"}
    for record in records:
        assert check(record) == "fast"


def test_non_canonical_but_valid_records_fall_back() -> None:
    base = {
        "event_id": "6b900704-3b21-4d64-abc6-d5321bc9cc41",
        "name": "product_view",
        "timestamp": "2025-11-20T11:00:00Z",
        "anonymous_id": "a1",
        "received_at": "2025-11-20T12:00:00Z",
    }
    for props in (
        {"product_id": "p1", "price": 20},  # an int the dump makes 20.0
        {"category": "c", "product_id": "p1"},  # out of the model's order
        {"product_id": "p1", "category": None},  # a null the dump leaves out
        {"product_id": "p1", "extra": {"nested": None}},
    ):
        assert check(orjson.dumps({**base, "properties": props})) == "fallback"


def _dumped(info: Any) -> bool:
    """Whether ``model_dump(exclude_none=True)`` always writes the field."""
    return info.is_required() or info.get_default(call_default_factory=True) is not None


def test_the_fast_path_mirrors_every_field_and_kind_of_the_models() -> None:
    # A field or standard event added to schemas/events.py must be mirrored (or left to
    # load_event) before the generated records above can say anything about it.
    def names(struct: Any) -> set[str]:
        return {f.name for f in msgspec.structs.fields(struct)}

    assert names(_Wire) == set(Event.model_fields)
    assert names(FastContext) == set(Context.model_fields)
    assert names(FastPage) == set(Page.model_fields)
    assert names(FastCampaign) == set(Campaign.model_fields)
    assert set(FastEvent.__slots__) == set(Event.model_fields) | {"key", "ts_ms"}
    assert set(_CANONICAL) == set(PROPERTY_MODELS) == STANDARD_EVENTS
    for name, model in PROPERTY_MODELS.items():
        mirrored = [(field, required) for field, required, _ in _CANONICAL[name]]
        declared = [(field, _dumped(info)) for field, info in model.model_fields.items()]
        assert mirrored == declared, name
    assert list(_ITEM_FIELDS) == list(OrderItem.model_fields)
    # The generated records name every standard event, and every property of one.
    assert set(NAMES) >= STANDARD_EVENTS
    assert set(KEYS) >= {f for model in PROPERTY_MODELS.values() for f in model.model_fields}
