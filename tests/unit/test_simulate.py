"""The traffic simulator: reproducible, valid and shaped like real shopping."""

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.local.simulate import (
    _batches,
    generate_events,
    is_server_event,
    preferred_hour,
    preferred_variant,
    read_chance,
    simulate_shoppers,
)
from schemas.events import SERVER_EVENTS, parse_event

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_same_seed_gives_the_same_events_ids_included():
    first = generate_events(42, users=50, events=3000, end=START, days=3)
    assert first == generate_events(42, users=50, events=3000, end=START, days=3)
    other = generate_events(43, users=50, events=3000, end=START, days=3)
    assert {e["event_id"] for e in first}.isdisjoint({e["event_id"] for e in other})


def test_events_are_valid_in_time_order_within_the_window():
    events = generate_events(7, users=80, events=5000, end=START, days=5)
    assert len(events) == 5000
    assert len({e["event_id"] for e in events}) == 5000
    for event in events:
        parsed = parse_event(event, received_at=START)
        assert START - timedelta(days=5) <= parsed.timestamp <= START
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


def test_the_mix_looks_like_shopping():
    events = generate_events(1, users=200, events=20_000, end=START, days=7)
    counts = Counter(e["name"] for e in events)
    # Funnel: views > carts > checkouts > orders, and every behaviour shows up.
    assert counts["page_view"] > counts["product_view"] > counts["add_to_cart"]
    assert counts["add_to_cart"] > counts["checkout_started"] > counts["order_placed"] > 0
    for name in ("spec_linger", "deep_scroll", "search", "remove_from_cart", "exit_intent"):
        assert counts[name] > 0, name
    for name in ("identify", "consent", "button_click", "price_drop"):
        assert counts[name] > 0, name
    # Return visits: most shoppers have more than one session.
    sessions = {(e["anonymous_id"], e["session_id"]) for e in events if e.get("session_id")}
    per_shopper = Counter(anonymous_id for anonymous_id, _ in sessions)
    assert sum(1 for n in per_shopper.values() if n > 1) > len(per_shopper) / 2
    # After identify, a shopper's events carry the user id.
    assert any("user_id" in e and e["name"] == "order_placed" for e in events)
    # Carts abandoned: more checkouts started than orders placed.
    assert counts["checkout_started"] > counts["order_placed"]


def test_phone_numbers_are_fictional():
    events = generate_events(3, users=300, events=20_000, end=START, days=7)
    phones = [e["properties"]["phone"] for e in events if "phone" in e["properties"]]
    assert phones
    assert all(p.startswith("+1") and p[5:10] == "55501" for p in phones), phones[:5]


def test_server_events_go_in_their_own_batches_in_time_order():
    events = generate_events(5, users=20, events=2000, end=START, days=2)
    batches = list(_batches(events, 100, with_server_key=True))
    assert sum(len(b) for _, b in batches) == len(events)
    for server, batch in batches:
        assert len(batch) <= 100
        assert all(is_server_event(e) == server for e in batch)
    without = list(_batches(events, 100, with_server_key=False))
    assert all(e["name"] not in SERVER_EVENTS for _, b in without for e in b)


def test_shoppers_with_a_propensity_are_seeded_and_it_drives_carts_and_orders():
    first = simulate_shoppers(9, users=300, events=20_000, end=START, days=7)
    assert first == simulate_shoppers(9, users=300, events=20_000, end=START, days=7)
    shoppers = {e["anonymous_id"] for e in first.events if e["name"] != "price_drop"}
    assert shoppers <= set(first.propensity)
    assert all(0.0 <= p <= 1.0 for p in first.propensity.values())
    # The truth: the third most inclined to buy add to the cart and order far more
    # often per product viewed than the third least inclined.
    ranked = sorted(first.propensity, key=first.propensity.__getitem__)
    low, high = set(ranked[:100]), set(ranked[-100:])

    def per_view(group: set[str], name: str) -> float:
        counts = Counter(e["name"] for e in first.events if e["anonymous_id"] in group)
        return counts[name] / counts["product_view"]

    assert per_view(high, "add_to_cart") > 3 * per_view(low, "add_to_cart")
    assert per_view(high, "spec_linger") > 3 * per_view(low, "spec_linger")
    assert per_view(high, "order_placed") > 3 * per_view(low, "order_placed")
    # Signals it does not drive are drawn alike.
    assert per_view(high, "button_click") == pytest.approx(per_view(low, "button_click"), rel=0.3)


def test_plain_traffic_is_what_it_was_before_shoppers_had_a_propensity():
    # The fingerprint of these events as generated before the propensity existed: other
    # tests and benchmarks replay plain traffic, which must not change under them.
    plain = generate_events(9, users=50, events=2_000, end=START, days=2)
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
    assert digest == "c792cfa24e08dd37244fd884cf51394ee0302bd4c6de91b5e6a0535d635d8367"


def test_shoppers_hidden_hours_are_fixed_by_the_seed_and_spread_over_the_day() -> None:
    users = [f"u{i}" for i in range(2400)]
    hours = Counter(preferred_hour(7, u) for u in users)
    assert set(hours) == set(range(24)) and max(hours.values()) < 2 * 2400 / 24
    assert [preferred_hour(7, u) for u in users] == [preferred_hour(7, u) for u in users]
    assert [preferred_hour(7, u) for u in users] != [preferred_hour(8, u) for u in users]


def test_a_message_is_likeliest_read_at_the_preferred_hour_across_midnight_too() -> None:
    assert read_chance(23, 23) == max(read_chance(23, h) for h in range(24))
    assert read_chance(23, 0) == read_chance(23, 22) > read_chance(23, 1) > read_chance(23, 2)
    assert read_chance(23, 12) == min(read_chance(23, h) for h in range(24)) > 0


@given(st.integers(0, 2**32), st.text(min_size=1, max_size=20), st.integers(1, 5))
def test_a_shoppers_preferred_variant_is_one_of_the_templates_and_fixed(seed, user, n):
    variants = [f"v{i}" for i in range(n)]
    chosen = preferred_variant(seed, user, variants)
    assert chosen in variants and chosen == preferred_variant(seed, user, variants)


def test_most_shoppers_prefer_the_first_variant():
    variants = ["first", "second", "third"]
    counts = Counter(preferred_variant(7, f"u{i}", variants) for i in range(5000))
    # 60 % prefer the first outright, and a third of the rest land on it too.
    assert 0.69 < counts["first"] / 5000 < 0.77, counts
    assert min(counts.values()) > 0.1 * 5000, counts
