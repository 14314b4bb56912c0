"""The pure Segment → contract mapping (schemas/segment.py): the table, the envelope, and
any payload at all giving either a valid event of our contract or a reason."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import STANDARD_EVENTS, Event, EventError, parse_event
from schemas.segment import (
    CALL_TYPES,
    MESSAGE_ID_NAMESPACE,
    TRACK_EVENTS,
    Skipped,
    custom_name,
    segment_event,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SOURCE = "key-hash"


def mapped(message: Any, call: str | None = None, **batch: Any) -> Event:
    raw = segment_event(message, call=call, received_at=NOW, source=SOURCE, **batch)
    assert not isinstance(raw, Skipped)
    return parse_event(raw, received_at=NOW, max_age=timedelta(days=30))


def track(event: str, properties: dict, **fields: Any) -> dict:
    return {
        "type": "track",
        "event": event,
        "properties": properties,
        "anonymousId": "a-1",
        "messageId": str(uuid.uuid4()),
        **fields,
    }


PRODUCT = {"product_id": "p1", "name": "Mug", "price": 9.5, "image_url": "i", "url": "u"}


@pytest.mark.parametrize(
    ("segment", "ours", "properties", "expected"),
    [
        (
            "Product Viewed",
            "product_view",
            {**PRODUCT, "category": "c"},
            {**PRODUCT, "category": "c"},
        ),
        ("Product Viewed", "product_view", {"sku": "S-1"}, {"sku": "S-1", "product_id": "S-1"}),
        ("Product Viewed", "product_view", {"id": 42}, {"id": 42, "product_id": "42"}),
        ("Product Added", "add_to_cart", PRODUCT, {**PRODUCT, "quantity": 1}),
        (
            "Product Removed",
            "remove_from_cart",
            {**PRODUCT, "quantity": 3},
            {**PRODUCT, "quantity": 3},
        ),
        ("Products Searched", "search", {"query": "mug"}, {"query": "mug"}),
        ("Checkout Started", "checkout_started", {"revenue": 5}, {"revenue": 5}),
        ("Cart Viewed", "cart_viewed", {"cart_id": "c"}, {"cart_id": "c"}),
        ("Product List Viewed", "product_list_viewed", {"list_id": "l"}, {"list_id": "l"}),
        ("Signed Up", "signed_up", {}, {}),
    ],
)
def test_the_track_table(segment: str, ours: str, properties: dict, expected: dict):
    event = mapped(track(segment, properties))
    assert (event.name, event.properties) == (ours, expected)


def test_order_completed_becomes_order_placed_with_items():
    order = {
        "order_id": "o1",
        "revenue": 20.0,
        "currency": "usd",
        "coupon": "SPRING",
        "products": [
            {"product_id": "p1", "quantity": 2, "price": 5.0, "category": "mugs"},
            {"sku": "s2", "price": 10.0},
        ],
    }
    event = mapped(track("Order Completed", order, userId="u1"))
    assert event.name == "order_placed"
    assert event.properties == {
        "order_id": "o1",
        "revenue": 20.0,
        "total": 20.0,  # total, else revenue
        "currency": "USD",
        "coupon": "SPRING",
        "items": [
            {
                "product_id": "p1",
                "quantity": 2,
                "amount": 10.0,
                "tax": 0.0,
                "discount": 0.0,
                "category": "mugs",
            },
            {"product_id": "s2", "quantity": 1, "amount": 10.0, "tax": 0.0, "discount": 0.0},
        ],
    }


def test_every_table_entry_names_a_standard_event():
    assert {m.name for m in TRACK_EVENTS.values()} <= STANDARD_EVENTS


def test_calls_other_than_track():
    page = mapped(
        {
            "type": "page",
            "anonymousId": "a",
            "name": "Home",
            "context": {"page": {"url": "https://s/", "title": "T"}},
        }
    )
    assert (page.name, page.properties["url"], page.properties["page_name"]) == (
        "page_view",
        "https://s/",
        "Home",
    )
    assert page.context.page.title == "T"
    screen = mapped({"type": "screen", "userId": "u", "name": "Cart"})
    assert (screen.name, screen.properties, screen.anonymous_id) == (
        "screen_view",
        {"screen_name": "Cart"},
        "u",
    )
    identify = mapped({"userId": "u", "anonymousId": "a", "traits": {"plan": "x"}}, "identify")
    assert (identify.name, identify.user_id, identify.properties["traits"]) == (
        "identify",
        "u",
        {"plan": "x"},
    )
    alias = mapped({"previousId": "old", "userId": "new"}, "alias")
    assert (alias.name, alias.anonymous_id, alias.user_id) == ("identify", "old", "new")
    assert alias.key == "old"  # ordered after the previous id's events, as an identify
    group = mapped({"anonymousId": "a", "groupId": "g1", "traits": {"n": 1}}, "group")
    assert (group.name, group.properties) == ("group", {"group_id": "g1", "traits": {"n": 1}})


def test_message_ids():
    given_id = str(uuid.uuid4())
    assert str(mapped(track("X", {}, messageId=given_id)).event_id) == given_id
    other = mapped(track("X", {}, messageId="ajs-next-abc")).event_id
    assert other == uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{SOURCE}\x00ajs-next-abc")
    # Without a messageId: the content decides, sentAt aside.
    message = track("X", {}, messageId=None, timestamp="2026-05-01T11:00:00Z")
    first = mapped({**message, "sentAt": "2026-05-01T11:00:01Z"}).event_id
    again = mapped({**message, "sentAt": "2026-05-01T11:05:00Z"}).event_id
    assert first == again
    assert mapped({**message, "event": "Y"}).event_id != first


def test_clock_skew_correction_and_defaults():
    # The device is 2 h behind: it says the event was at 09:59:50 and sent at 10:00:00.
    message = track("X", {}, timestamp="2026-05-01T09:59:50Z", sentAt="2026-05-01T10:00:00Z")
    assert mapped(message).timestamp == NOW - timedelta(seconds=10)
    # sentAt from the batch when the message has none; no timestamp: received_at.
    no_sent = track("X", {}, timestamp="2026-05-01T09:59:50Z")
    batch_sent = mapped(no_sent, batch_sent_at="2026-05-01T10:00:00Z")
    assert batch_sent.timestamp == NOW - timedelta(seconds=10)
    assert mapped(no_sent).timestamp == datetime(2026, 5, 1, 9, 59, 50, tzinfo=UTC)
    assert mapped(track("X", {})).timestamp == NOW
    # The correction is to the second: a resend, whose transit differs, keeps its time.
    at = "2026-05-01T09:59:50.123Z"
    first = mapped(track("X", {}, timestamp=at, sentAt="2026-05-01T10:00:00.000Z"))
    later = segment_event(
        track("X", {}, timestamp=at, sentAt="2026-05-01T10:03:00.000Z"),
        call=None,
        received_at=NOW + timedelta(minutes=3, milliseconds=40),
        source=SOURCE,
    )
    assert first.timestamp == NOW - timedelta(seconds=10, milliseconds=-123)
    assert datetime.fromisoformat(later["timestamp"]) == first.timestamp
    naive = mapped(track("X", {}, timestamp="2026-05-01T11:00:00"))
    assert naive.timestamp == datetime(2026, 5, 1, 11, tzinfo=UTC)


def test_integrations_can_turn_us_off():
    off = segment_event(
        track("X", {}, integrations={"intentflow": False}),
        call=None,
        received_at=NOW,
        source=SOURCE,
    )
    assert isinstance(off, Skipped)
    all_off = track("X", {}, integrations={"All": False, "intentflow": True})
    assert mapped(all_off).name == "x"
    batch_off = segment_event(
        track("X", {}), call=None, received_at=NOW, source=SOURCE, batch_integrations={"All": False}
    )
    assert isinstance(batch_off, Skipped)


@pytest.mark.parametrize(
    ("name", "snake"),
    [("Signed Up", "signed_up"), ("productShared", "product_shared"), ("A/B  test!", "a_b_test")],
)
def test_custom_names(name: str, snake: str):
    assert custom_name(name) == snake


@pytest.mark.parametrize("name", ["!!!", "42 things", "x" * 65, "   "])
def test_names_that_make_no_event_name_are_refused_with_the_reason(name: str):
    with pytest.raises(EventError) as refused:
        mapped(track(name, {}))
    assert refused.value.errors[0]["loc"] == ["event"]


# --- any payload ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
segment_names = st.sampled_from([*TRACK_EVENTS, "Cart Viewed", "Signed Up", "", "!!"])
ids = st.one_of(st.uuids().map(str), st.text(max_size=30), st.integers(), json_values)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(CALL_TYPES), json_values),
        "event": st.one_of(segment_names, json_values),
        "messageId": ids,
        "anonymousId": ids,
        "userId": ids,
        "previousId": ids,
        "groupId": ids,
        "timestamp": json_values,
        "sentAt": json_values,
        "properties": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "product_id": ids,
                    "price": json_values,
                    "quantity": json_values,
                    "products": st.lists(
                        st.dictionaries(
                            st.sampled_from(["product_id", "sku", "price", "quantity", "category"]),
                            json_values,
                        )
                    ),
                    "currency": json_values,
                    "total": json_values,
                    "query": json_values,
                    "url": json_values,
                },
            ),
            json_values,
        ),
        "traits": json_values,
        "context": json_values,
        "integrations": json_values,
    },
)

# Mostly well-formed: what a real SDK sends, with some values off.
recent = st.datetimes(
    min_value=datetime(2026, 4, 5), max_value=datetime(2026, 5, 2), timezones=st.just(UTC)
).map(lambda d: d.isoformat())
small_ids = st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=12), st.integers(0, 999))
money = st.one_of(st.floats(0, 1000, allow_nan=False), st.integers(0, 1000), json_values)
product = st.fixed_dictionaries(
    {"product_id": small_ids, "price": money},
    optional={"quantity": st.one_of(st.integers(1, 5), json_values), "name": st.text(max_size=9)},
)
plausible = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "track", "track", *CALL_TYPES]),
        "messageId": small_ids,
        "anonymousId": small_ids,
        "timestamp": st.one_of(recent, json_values),
        "event": segment_names,
    },
    optional={
        "userId": small_ids,
        "previousId": small_ids,
        "groupId": small_ids,
        "sentAt": recent,
        "properties": st.one_of(
            product,
            st.fixed_dictionaries(
                {
                    "order_id": small_ids,
                    "currency": st.sampled_from(["eur", "USD", "x"]),
                    "total": money,
                    "products": st.lists(product, min_size=0, max_size=3),
                }
            ),
            st.fixed_dictionaries({"query": st.text(max_size=9), "url": st.text(max_size=9)}),
        ),
        "traits": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "context": st.fixed_dictionaries(
            {},
            optional={
                "page": st.dictionaries(st.sampled_from(["url", "title", "path"]), json_values),
                "campaign": st.dictionaries(st.sampled_from(["source", "message_id"]), json_values),
                "location": st.dictionaries(st.just("country"), json_values),
                "device": st.dictionaries(st.just("type"), json_values),
            },
        ),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    message=st.one_of(plausible, messages, json_values),
    call=st.one_of(st.none(), st.sampled_from(CALL_TYPES)),
    batch_context=json_values,
    batch_sent_at=json_values,
)
def test_any_payload_is_an_event_of_our_contract_or_a_reason(
    message: Any, call: str | None, batch_context: Any, batch_sent_at: Any
):
    try:
        raw = segment_event(
            message,
            call=call,
            received_at=NOW,
            source=SOURCE,
            batch_context=batch_context,
            batch_sent_at=batch_sent_at,
        )
        if isinstance(raw, Skipped):
            assert raw.reason
            return
        event = parse_event(raw, received_at=NOW, max_age=timedelta(days=30))
    except EventError as exc:
        assert exc.errors and all(e["msg"] for e in exc.errors)
        return
    # A valid event, and it survives the trip through the topic unchanged.
    assert isinstance(event, Event)
    assert Event.model_validate_json(event.to_json()) == event
