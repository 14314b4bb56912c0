"""The user state's byte form: exact, compact, and free of phone numbers."""

import orjson
import pytest

from pipeline.domain import state_from_bytes, state_to_bytes

from .builders import Shopper, fold, rules_with

RULES = rules_with()


def typical_active_user():
    """A session: consent, four products browsed, two in the cart, a search, scrolling."""
    shopper = Shopper("anon-3f2a9c1e", "user-48213", timezone="Europe/Berlin")
    events = [shopper.consent("whatsapp")]
    for product, category in [("p-1041", "shoes"), ("p-2210", "shoes"), ("p-388", "socks")]:
        events += [
            shopper.view(product, 20, category),
            shopper.linger(product, 8_000),
            shopper.event("deep_scroll", 5, percentage=75.0),
        ]
    events += [
        shopper.event("search", 30, query="trail running shoes"),
        shopper.view("p-4410", 10, "jackets"),
        shopper.add("p-1041", 1, 89.9),
        shopper.add("p-388", 2, 9.5),
        shopper.event("page_view", 15, url="https://shop.example/cart"),
    ]
    state, _ = fold(events, RULES)
    return state


def test_a_typical_active_user_fits_in_a_kibibyte():
    data = state_to_bytes(typical_active_user())
    assert len(data) <= 1024, len(data)


def test_the_byte_form_round_trips_exactly():
    state = typical_active_user()
    data = state_to_bytes(state)
    assert state_from_bytes(data) == state
    assert state_to_bytes(state_from_bytes(data)) == data


def test_no_phone_number_is_stored():
    assert b"+49" not in state_to_bytes(typical_active_user())


def test_a_foreign_layout_is_refused():
    with pytest.raises(ValueError):
        state_from_bytes(b'{"not": "a state"}')


def test_a_state_with_withdrawable_nudges_round_trips_and_an_older_one_reads_back():
    shopper = Shopper("anon-5", timezone="Europe/Berlin")
    lingering = [shopper.linger("p5", 40_000, after_s=5) for _ in range(4)]
    state, _ = fold([shopper.consent(), *lingering, shopper.add("p1")], RULES)
    assert len(state.hi_sent) == 1
    data = state_to_bytes(state)
    assert state_from_bytes(data) == state
    # Written before the withdrawable nudges and the rescue's key were kept: read back
    # with none and with the state's own key.
    raw = orjson.loads(data)
    raw[12] = raw[12][:-1]  # the cart, without its rescue key
    older = orjson.dumps(raw[:-1])
    restored = state_from_bytes(older)
    assert restored.hi_sent == [] and restored.cart is not None
    assert restored.cart.rescue_key is None
