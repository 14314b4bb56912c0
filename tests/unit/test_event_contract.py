"""The event contract: what parse_event accepts, what it refuses and how it says so."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    PROPERTY_MODELS,
    SERVER_EVENTS,
    EventError,
    load_event,
    parse_event,
    truncate_ip,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def raw(name: str = "page_view", **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": "2026-05-01T11:59:00+02:00",
        "anonymous_id": "anon-1",
        "properties": {"url": "https://shop.example/"} if name == "page_view" else {},
    }
    event.update(fields)
    return event


def errors_of(event: Any) -> dict[tuple, str]:
    with pytest.raises(EventError) as caught:
        parse_event(event, received_at=NOW)
    return {tuple(e["loc"]): e["msg"] for e in caught.value.errors}


STANDARD = {
    "page_view": {"url": "https://shop.example/p/1"},
    "product_view": {"product_id": "p1"},
    "spec_linger": {"product_id": "p1", "dwell_ms": 4200},
    "deep_scroll": {"percentage": 75},
    "search": {"query": "noise cancelling"},
    "add_to_cart": {"product_id": "p1", "quantity": 1, "price": 9.5},
    "remove_from_cart": {"product_id": "p1", "quantity": 1, "price": 9.5},
    "checkout_started": {},
    "order_placed": {
        "order_id": "o1",
        "items": [{"product_id": "p1", "quantity": 1, "amount": 9.5, "tax": 1.9, "discount": 0}],
        "total": 11.4,
        "currency": "EUR",
    },
    "exit_intent": {},
    "button_click": {"element_id": "buy", "text": "Buy"},
    "price_drop": {"product_id": "p1", "old_price": 10, "new_price": 8},
    "identify": {"traits": {"plan": "plus"}},
    "consent": {"channel": "whatsapp", "granted": True, "phone": "+12025550123"},
}


def test_every_standard_event_has_an_example_here():
    assert set(STANDARD) == set(PROPERTY_MODELS)
    assert {"order_placed", "price_drop"} <= SERVER_EVENTS


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_standard_events_with_their_required_properties_parse(name: str):
    event = parse_event(
        raw(name, properties=STANDARD[name], user_id="u1"), received_at=NOW, ip="203.0.113.9"
    )
    assert event.name == name
    assert event.received_at == NOW
    assert event.ip == "203.0.113.0"
    # identify is keyed by the anonymous id it claims (see Event.key).
    assert event.key == ("anon-1" if name == "identify" else "u1")


# identify needs only its user_id (traits are optional).
@pytest.mark.parametrize("name", sorted(n for n in STANDARD if STANDARD[n] and n != "identify"))
def test_standard_events_without_their_properties_are_refused_by_field(name: str):
    errors = errors_of(raw(name, properties={}, user_id="u1"))
    assert errors and all(loc[0] == "properties" for loc in errors), errors


def test_custom_events_keep_free_properties():
    event = parse_event(raw("wishlist_add", properties={"any": [1, {"x": None}]}), received_at=NOW)
    assert event.properties == {"any": [1, {"x": None}]}
    assert event.key == "anon-1"


def test_extra_properties_of_standard_events_are_kept_and_types_normalised():
    props = {"product_id": "p1", "quantity": "2", "price": 3, "colour": "red"}
    event = parse_event(raw("add_to_cart", properties=props), received_at=NOW)
    assert event.properties == {"product_id": "p1", "quantity": 2, "price": 3.0, "colour": "red"}


@pytest.mark.parametrize("name", ["", "Page_view", "1abc", "a" * 65, "with-dash", "ünïcode"])
def test_bad_names_are_refused(name: str):
    assert ("name",) in errors_of(raw(name))


@pytest.mark.parametrize(
    "timestamp", ["2026-05-01T12:00:00", 1_714_564_800, "1714564800", "yesterday", None]
)
def test_timestamps_must_be_iso_8601_with_a_zone(timestamp: Any):
    assert ("timestamp",) in errors_of(raw(timestamp=timestamp))


def test_future_timestamps_beyond_24_hours_are_refused_and_old_ones_accepted():
    late = (NOW + timedelta(hours=23)).isoformat()
    assert parse_event(raw(timestamp=late), received_at=NOW)
    assert parse_event(raw(timestamp="2019-01-01T00:00:00Z"), received_at=NOW)
    too_late = (NOW + timedelta(hours=24, seconds=1)).isoformat()
    assert "future" in errors_of(raw(timestamp=too_late))[("timestamp",)]


def test_properties_over_32_kib_are_refused():
    assert parse_event(raw("custom", properties={"pad": "x" * 32_000}), received_at=NOW)
    assert "32 KiB" in errors_of(raw("custom", properties={"pad": "x" * 33_000}))[("properties",)]


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_numbers_json_cannot_hold_are_refused_where_they_sit(number: float):
    # They would be written as null on the topic: a value changed without a word.
    nested = {"traits": {"plan": {"seats": [1, number]}}}
    assert (
        "finite"
        in errors_of(raw("identify", user_id="u1", properties=nested))[
            ("properties", "traits", "plan", "seats", 1)
        ]
    )
    assert (
        "finite" in errors_of(raw("custom", properties={"score": number}))[("properties", "score")]
    )


def test_identify_needs_a_user_id():
    assert ("user_id",) in errors_of(raw("identify", properties={"traits": {}}))


@pytest.mark.parametrize("phone", ["0123456", "+0123456789", "12025550123", "+1 202 555 0123"])
def test_consent_phone_numbers_must_be_e164(phone: str):
    props = {"channel": "sms", "granted": True, "phone": phone}
    assert ("properties", "phone") in errors_of(raw("consent", properties=props))


@given(
    channel=st.sampled_from(["whatsapp", "sms", "email"]),
    granted=st.booleans(),
    purpose=st.one_of(st.none(), st.sampled_from(["transactional", "marketing"])),
)
def test_a_consent_is_for_one_purpose_transactional_unless_it_says_marketing(
    channel: str, granted: bool, purpose: str | None
):
    props: dict[str, Any] = {"channel": channel, "granted": granted}
    if purpose is not None:
        props["purpose"] = purpose
    event = parse_event(raw("consent", properties=props), received_at=NOW)
    assert event.properties.get("purpose", "transactional") == (purpose or "transactional")


@given(purpose=st.text(max_size=20).filter(lambda p: p not in ("transactional", "marketing")))
def test_a_consent_purpose_other_than_the_two_is_refused_by_name(purpose: str):
    props = {"channel": "whatsapp", "granted": True, "purpose": purpose}
    assert ("properties", "purpose") in errors_of(raw("consent", properties=props))


def test_envelope_and_property_problems_are_reported_together():
    errors = errors_of({"name": "add_to_cart", "properties": {"quantity": 0}})
    assert {("event_id",), ("timestamp",), ("anonymous_id",)} <= set(errors)
    assert {("properties", "product_id"), ("properties", "quantity")} <= set(errors)


@pytest.mark.parametrize("body", [[], "x", 1, None])
def test_an_event_must_be_an_object(body: Any):
    assert errors_of(body) == {(): "an event must be a JSON object"}


def test_server_fields_from_clients_are_overwritten():
    event = parse_event(
        raw(received_at="2000-01-01T00:00:00Z", ip="1.2.3.4"), received_at=NOW, ip=None
    )
    assert event.received_at == NOW and event.ip is None


def test_context_carries_page_user_agent_and_campaign():
    context = {
        "page": {
            "url": "https://shop.example/?utm_source=x",
            "referrer": "https://a",
            "title": "T",
        },
        "user_agent": "UA",
        "campaign": {"source": "intentflow", "utm_message_id": "msg-1"},
    }
    event = parse_event(raw(context=context), received_at=NOW)
    assert event.utm_message_id == "msg-1"
    assert event.context.page and event.context.page.title == "T"


@pytest.mark.parametrize(
    ("ip", "stored"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
        ("::ffff:10.1.2.3", "::"),
        ("not-an-ip", ""),
    ],
)
def test_addresses_are_truncated_to_their_network(ip: str, stored: str):
    assert truncate_ip(ip) == stored


def test_a_stamped_event_reads_back_identically():
    event = parse_event(raw("add_to_cart", properties=STANDARD["add_to_cart"]), received_at=NOW)
    assert load_event(event.to_json()) == event
