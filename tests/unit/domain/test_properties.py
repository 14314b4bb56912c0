"""Invariants of the fold, stated as named predicates and checked on generated journeys."""

import random
from collections import Counter, defaultdict
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain import (
    UserState,
    advance,
    apply,
    merge,
    next_deadline,
    state_from_bytes,
    state_to_bytes,
)
from pipeline.domain.clock import to_ms
from pipeline.domain.scoring import value
from schemas.events import Event
from schemas.messages import Nudge, NudgeHeld

from .builders import Decision, Shopper, fold, rules_with

RULES = rules_with(
    suppression={
        "frequency_cap_per_day": 3,
        "holdout_share": 0.3,
        "quiet_hours": {"start": "22:00", "end": "07:00", "max_hold_s": 28_800},
    },
    high_intent={"threshold": 5.0},
)
PRODUCTS = ("p1", "p2", "p3")
# Gaps that sometimes cross the cart timeout (30 min) and quiet hours.
GAPS = st.one_of(st.integers(1, 120), st.integers(600, 4 * 3600))
STEP = st.tuples(
    st.sampled_from(
        [
            "view",
            "view",
            "linger",
            "linger",
            "add",
            "add",
            "remove",
            "scroll",
            "exit",
            "checkout",
            "order",
            "grant",
            "grant_no_phone",
            "revoke",
            "grant_order_updates",
            "revoke_order_updates",
            "search",
        ]
    ),
    st.sampled_from(PRODUCTS),
    GAPS,
    st.integers(1, 3),
)
# Most shoppers consent first (whatsapp; sometimes email too), so nudges get sent.
CONSENT_FIRST = st.sampled_from(
    [[], [("grant", "p1", 1, 1)], [("grant", "p1", 1, 1), ("grant", "p1", 1, 3)]]
)
JOURNEY = st.builds(
    lambda first, rest: first + rest, CONSENT_FIRST, st.lists(STEP, min_size=1, max_size=30)
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(steps, shopper: Shopper) -> list[Event]:
    events = []
    for i, (kind, product, gap, qty) in enumerate(steps):
        shopper.clock += timedelta(seconds=gap - 1)
        match kind:
            case "view":
                events.append(shopper.view(product))
            case "linger":
                events.append(shopper.linger(product, qty * 12_000))
            case "add":
                events.append(shopper.add(product, qty))
            case "remove":
                events.append(shopper.remove(product, qty))
            case "scroll":
                events.append(shopper.event("deep_scroll", percentage=30.0 * qty))
            case "exit":
                events.append(shopper.event("exit_intent"))
            case "checkout":
                events.append(shopper.event("checkout_started"))
            case "order":
                events.append(shopper.order(f"o{i}", (product,)))
            case "grant":
                events.append(shopper.consent(("whatsapp", "sms", "email")[qty - 1]))
            case "grant_no_phone":
                events.append(shopper.consent("sms", phone=False))
            case "revoke":
                events.append(shopper.consent(("whatsapp", "sms", "email")[qty - 1], False))
            case "grant_order_updates":  # no purpose: transactional only
                events.append(shopper.consent(("whatsapp", "sms", "email")[qty - 1], purpose=None))
            case "revoke_order_updates":
                channel = ("whatsapp", "sms", "email")[qty - 1]
                events.append(shopper.consent(channel, False, purpose="transactional"))
            case "search":
                events.append(shopper.event("search", query="shoes"))
    return events


def fold_and_finish(events: list[Event], state: UserState | None = None):
    state, decisions = fold(events, RULES, state)
    assert state is not None
    state, rest = advance(state, to_ms(events[-1].timestamp) + 10**9, RULES)
    return state, decisions + rest


# --- the invariants ---------------------------------------------------------


def at_most_one_cart_rescue_per_cart(decisions: list[Decision]) -> bool:
    per_cart = Counter(
        d.cart_id for d in decisions if isinstance(d, Nudge) and d.kind == "cart_rescue"
    )
    return all(count == 1 for count in per_cart.values())


def one_record_per_nudge_id(decisions: list[Decision]) -> bool:
    ids = [d.nudge_id for d in decisions if isinstance(d, Nudge)]
    return len(ids) == len(set(ids))


def every_hold_announced_once_then_settled(decisions: list[Decision]) -> bool:
    """A held nudge is announced once, before its one final record, which is decided
    no later than the announced release (or it was withdrawn earlier)."""
    held = {}
    for position, d in enumerate(decisions):
        if isinstance(d, NudgeHeld):
            if d.nudge_id in held or d.release_at < d.held_at:
                return False
            held[d.nudge_id] = (position, d)
    finals = {d.nudge_id: (i, d) for i, d in enumerate(decisions) if isinstance(d, Nudge)}
    for nudge_id, (position, hold) in held.items():
        if nudge_id not in finals:
            return False  # never settled, though every deadline has passed
        at, final = finals[nudge_id]
        if at < position or final.decided_at > hold.release_at:
            return False
    return True


def every_decision_stamped_with_rules_version(decisions: list[Decision]) -> bool:
    return all(d.rules_version == RULES.version for d in decisions)


def no_message_without_consent(events: list[Event], decisions: list[Decision]) -> bool:
    """An emitted nudge names only channels whose latest marketing consent before it
    granted them (consent to order updates, no purpose or transactional, is not enough)
    and where a phone is known."""
    for nudge in (d for d in decisions if isinstance(d, Nudge) and d.status == "emit"):
        if not nudge.channels:
            return False
        for channel in nudge.channels:
            consents = [
                e
                for e in events
                if e.name == "consent"
                and e.properties["channel"] == channel
                and e.properties.get("purpose") == "marketing"
                and e.timestamp <= nudge.decided_at
            ]
            if not consents or not consents[-1].properties["granted"]:
                return False
            # The phone may come with any consent on the channel (order updates too):
            # marketing consent is the shopper's yes, the phone where to send it.
            phones = [
                e
                for e in events
                if e.name == "consent"
                and e.properties["channel"] == channel
                and "phone" in e.properties
                and e.timestamp <= nudge.decided_at
            ]
            if channel != "email" and not phones:
                return False
    return True


def scores_bounded(state: UserState, at_ms: int) -> bool:
    cap = RULES.plan.cap
    plan = RULES.plan
    scopes = [(state.user, plan.decay_user)]
    scopes += [(p, plan.decay_product) for p in state.products.values()]
    scopes += [(c, plan.decay_category) for c in state.categories.values()]
    return (
        all(0 <= value(s, at_ms, rate) <= cap for s, rate in scopes)
        and all(v >= 0 for s, _ in scopes for v in s.parts.values())
        and len(state.products) <= plan.max_products
        and len(state.categories) <= plan.max_categories
        and len(state.seen) <= plan.dedup_max_ids
    )


def state_roundtrip(state: UserState) -> bool:
    data = state_to_bytes(state)
    again = state_from_bytes(data)
    return again == state and state_to_bytes(again) == data


# --- the properties ---------------------------------------------------------


@SETTINGS
@given(JOURNEY)
def test_at_most_one_cart_rescue_per_cart_and_one_record_per_nudge(steps):
    _, decisions = fold_and_finish(build(steps, Shopper()))
    assert at_most_one_cart_rescue_per_cart(decisions)
    assert one_record_per_nudge_id(decisions)


@SETTINGS
@given(JOURNEY)
def test_every_engine_hold_is_announced_then_settled(steps):
    _, decisions = fold_and_finish(build(steps, Shopper()))
    assert every_hold_announced_once_then_settled(decisions)


@SETTINGS
@given(JOURNEY)
def test_same_events_same_decisions(steps):
    events = build(steps, Shopper())
    first_state, first = fold_and_finish(events)
    second_state, second = fold_and_finish(events)
    assert first == second
    assert state_to_bytes(first_state) == state_to_bytes(second_state)


@SETTINGS
@given(JOURNEY, st.data())
def test_duplicates_ignored(steps, data):
    events = build(steps, Shopper())
    duplicate_of = data.draw(st.integers(0, len(events) - 1))
    position = data.draw(st.integers(duplicate_of + 1, len(events)))
    with_duplicate = [*events[:position], events[duplicate_of], *events[position:]]
    state, decisions = fold(events, RULES)
    state_dup, decisions_dup = fold(with_duplicate, RULES)
    assert decisions == decisions_dup
    assert state_to_bytes(state) == state_to_bytes(state_dup)


@SETTINGS
@given(JOURNEY)
def test_scores_bounded(steps):
    state = None
    for event in build(steps, Shopper()):
        state, _ = apply(state, event, RULES)
        assert scores_bounded(state, to_ms(event.timestamp))


@SETTINGS
@given(JOURNEY)
def test_no_message_without_consent(steps):
    events = build(steps, Shopper())
    _, decisions = fold_and_finish(events)
    assert no_message_without_consent(events, decisions)


@SETTINGS
@given(JOURNEY)
def test_every_decision_stamped_with_rules_version(steps):
    _, decisions = fold_and_finish(build(steps, Shopper()))
    assert every_decision_stamped_with_rules_version(decisions)


@SETTINGS
@given(st.lists(JOURNEY, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_batch_equals_incremental(journeys, rng: random.Random):
    """Advancing the partition watermark at every event or once at the end decides the same.

    Several shoppers' events are merged in event-time order, as on one partition.
    """
    streams = [build(steps, Shopper(f"anon-{i}", seed=i + 1)) for i, steps in enumerate(journeys)]
    events = sorted((e for s in streams for e in s), key=lambda e: (e.timestamp, rng.random()))
    end = to_ms(events[-1].timestamp)

    def run(advance_each_event: bool) -> dict[str, list[Decision]]:
        states: dict[str, UserState] = {}
        per_user: dict[str, list[Decision]] = defaultdict(list)
        for event in events:
            state, out = apply(states.get(event.key), event, RULES)
            states[event.key] = state
            per_user[event.key] += out
            if advance_each_event:
                watermark = to_ms(event.timestamp)
                for key, other in states.items():
                    deadline = next_deadline(other)
                    if deadline is not None and deadline <= watermark:
                        per_user[key] += advance(other, watermark, RULES)[1]
        for key, state in states.items():
            per_user[key] += advance(state, end, RULES)[1]
        return dict(per_user)

    assert run(advance_each_event=True) == run(advance_each_event=False)


@SETTINGS
@given(JOURNEY)
def test_state_roundtrip(steps):
    state = None
    for event in build(steps, Shopper()):
        state, _ = apply(state, event, RULES)
        assert state_roundtrip(state)


@SETTINGS
@given(JOURNEY, JOURNEY)
def test_merge_idempotent(user_steps, anonymous_steps):
    user, _ = fold_and_finish(build(user_steps, Shopper("anon-u", "u1", seed=1)))
    anonymous, _ = fold_and_finish(build(anonymous_steps, Shopper("anon-a", seed=2)))
    anonymous_bytes = state_to_bytes(anonymous)
    at = max(user.last_ms, anonymous.last_ms)
    once, first = merge(user, anonymous, RULES, at)
    assert state_to_bytes(anonymous) == anonymous_bytes  # the hand-over is not modified
    snapshot = state_to_bytes(once)
    twice, second = merge(once, state_from_bytes(anonymous_bytes), RULES, at)
    assert second == [] and state_to_bytes(twice) == snapshot
    assert at_most_one_cart_rescue_per_cart(first)
    assert scores_bounded(twice, at) and state_roundtrip(twice)
