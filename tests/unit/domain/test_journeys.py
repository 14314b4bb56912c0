"""Scripted shopper journeys through the fold, one behaviour each."""

from datetime import timedelta

from pipeline.domain import (
    UserState,
    merge,
    next_deadline,
    state_from_bytes,
    state_to_bytes,
    wants_merge,
)
from pipeline.domain.clock import to_datetime, to_ms
from pipeline.domain.state import MARKETING
from schemas.messages import NudgeHeld

from .builders import (
    NOON,
    Shopper,
    cancellations,
    fold,
    nudges,
    rules_with,
    run_until,
    upgrades,
)

RULES = rules_with()
TIMEOUT = timedelta(seconds=RULES.cart_rescue.timeout_s)


def browse_and_cart(shopper: Shopper) -> list:
    return [
        shopper.consent("whatsapp"),
        shopper.view("p1"),
        shopper.linger("p1", 6_000),
        shopper.add("p1", qty=2, price=19.5),
        shopper.view("p2", category="c2"),
    ]


def test_browsing_only_makes_no_nudge():
    shopper = Shopper()
    events = [shopper.consent(), *(shopper.view(f"p{i}") for i in range(5))]
    state, decisions = fold(events, RULES)
    state, later = run_until(state, NOON + timedelta(days=2), RULES)
    assert decisions == [] and later == []
    assert next_deadline(state) is None


def test_an_abandoned_cart_gets_exactly_one_rescue_after_the_timeout():
    shopper = Shopper()
    state, decisions = fold(browse_and_cart(shopper), RULES)
    assert decisions == []
    last_activity = shopper.clock
    assert next_deadline(state) == to_ms(last_activity + TIMEOUT)

    state, early = run_until(state, last_activity + TIMEOUT - timedelta(milliseconds=1), RULES)
    assert early == []
    state, fired = run_until(state, last_activity + TIMEOUT, RULES)
    state, again = run_until(state, last_activity + 10 * TIMEOUT, RULES)

    [rescue] = fired
    assert again == [] and next_deadline(state) is None
    assert rescue.kind == "cart_rescue" and rescue.status == "emit"
    assert rescue.decided_at == last_activity + TIMEOUT
    assert [(i.product_id, i.quantity, i.price) for i in rescue.items] == [("p1", 2, 19.5)]
    assert rescue.discount_percent == RULES.cart_rescue.discount_percent
    assert rescue.channels == ("whatsapp",)
    assert rescue.rules_version == RULES.version
    assert rescue.signals and rescue.signals[0][1] >= rescue.signals[-1][1]


def test_the_users_own_later_event_fires_an_overdue_rescue_at_its_deadline():
    shopper = Shopper()
    state, _ = fold(browse_and_cart(shopper), RULES)
    deadline = shopper.clock + TIMEOUT
    state, decisions = fold([shopper.view("p3", after_s=3 * TIMEOUT.total_seconds())], RULES, state)
    [rescue] = nudges(decisions, "cart_rescue")
    assert rescue.decided_at == deadline


def test_an_order_before_the_deadline_means_no_rescue():
    shopper = Shopper()
    events = [*browse_and_cart(shopper), shopper.order("o1", ("p1",))]
    state, decisions = fold(events, RULES)
    state, later = run_until(state, shopper.clock + 10 * TIMEOUT, RULES)
    assert nudges(decisions + later, "cart_rescue") == []
    assert next_deadline(state) is None


def test_an_order_after_the_rescue_cancels_it():
    shopper = Shopper()
    state, _ = fold(browse_and_cart(shopper), RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    shopper.at(shopper.clock + TIMEOUT)
    state, decisions = fold([shopper.order("o1", ("p1",), after_s=60)], RULES, state)
    [cancel] = cancellations(decisions)
    assert cancel.nudge_id == rescue.nudge_id and cancel.reason == "order_placed"


def test_emptying_the_cart_cancels_the_rescue_or_prevents_it():
    shopper = Shopper()
    state, _ = fold(browse_and_cart(shopper), RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    shopper.at(shopper.clock + TIMEOUT)
    state, decisions = fold([shopper.remove("p1", qty=2)], RULES, state)
    [cancel] = cancellations(decisions)
    assert (cancel.nudge_id, cancel.reason) == (rescue.nudge_id, "cart_emptied")

    other = Shopper("anon-2")
    state, decisions = fold([*browse_and_cart(other), other.remove("p1", qty=2)], RULES)
    assert decisions == [] and next_deadline(state) is None


def test_exit_intent_with_a_cart_brings_the_deadline_forward():
    shopper = Shopper()
    state, _ = fold([*browse_and_cart(shopper), shopper.event("exit_intent")], RULES)
    grace = timedelta(seconds=RULES.cart_rescue.exit_intent_grace_s)
    assert next_deadline(state) == to_ms(shopper.clock + grace)
    state, [rescue] = run_until(state, shopper.clock + grace, RULES)
    assert rescue.kind == "cart_rescue"


def test_exit_intent_without_a_cart_sets_no_deadline():
    shopper = Shopper()
    state, _ = fold([shopper.consent(), shopper.view("p1"), shopper.event("exit_intent")], RULES)
    assert next_deadline(state) is None


def test_checkout_started_pushes_the_deadline_and_does_not_cancel():
    shopper = Shopper()
    state, _ = fold([*browse_and_cart(shopper), shopper.event("checkout_started")], RULES)
    checkout = timedelta(seconds=RULES.cart_rescue.checkout_timeout_s)
    assert next_deadline(state) == to_ms(shopper.clock + checkout)
    state, [rescue] = run_until(state, shopper.clock + checkout, RULES)
    assert rescue.kind == "cart_rescue"


def test_the_third_order_makes_a_vip_once():
    shopper = Shopper(user_id="u1")
    events = [
        shopper.consent(),
        shopper.order("o1"),
        shopper.order("o1"),  # the store backend sent it twice: counted once
        shopper.order("o2"),
        shopper.order("o3"),
        shopper.order("o4"),
    ]
    _state, decisions = fold(events, RULES)
    [vip] = upgrades(decisions)
    assert vip.order_count == 3 and vip.user_key == "u1"
    assert vip.trigger_event_id == str(events[4].event_id)
    ttl = timedelta(seconds=RULES.vip.token_ttl_s)
    assert vip.expires_at == vip.issued_at + ttl == events[4].timestamp + ttl
    claims = vip.claims()
    assert claims["jti"] == vip.token_id and claims["sub"] == "u1"
    assert claims["exp"] - claims["iat"] == RULES.vip.token_ttl_s
    # The same events give the same token id.
    assert upgrades(fold(events, RULES)[1])[0].token_id == vip.token_id


def hand_over(anon_state, identify, user_state=None):
    """What the engine does: identify folded into the anonymous state, which goes over."""
    assert wants_merge(identify) == anon_state.key
    anon_state, decisions = fold([identify], RULES, anon_state)
    assert decisions == []
    handed_over = state_from_bytes(state_to_bytes(anon_state))
    user_id = identify.user_id
    user = user_state or UserState(user_id, user_id, identify.anonymous_id)
    return (*merge(user, handed_over, RULES, to_ms(identify.timestamp)), handed_over)


def test_anonymous_state_carries_over_on_identify_without_a_second_rescue():
    shopper = Shopper("anon-9")
    anon, _ = fold(browse_and_cart(shopper), RULES)
    anon, [rescue] = run_until(anon, shopper.clock + TIMEOUT, RULES)
    shopper.at(shopper.clock + TIMEOUT)

    identify = shopper.identify("u9", after_s=60)
    assert identify.key == "anon-9"
    user, merged, handed_over = hand_over(anon, identify)
    assert merged == []
    assert user.key == "u9" and user.merged == ["anon-9"]
    assert user.cart is not None and user.cart.rescue_id == rescue.nudge_id
    assert "p1" in user.products and user.consent["whatsapp"][0] & MARKETING
    user, later = run_until(user, shopper.clock + 10 * TIMEOUT, RULES)
    assert later == []

    # Re-delivered hand-over: nothing changes.
    before = state_to_bytes(user)
    user, again = merge(user, handed_over, RULES, to_ms(identify.timestamp))
    assert again == [] and state_to_bytes(user) == before

    # The rescue sent while anonymous is cancelled by the user's order, under the key it
    # went out with: the dispatcher holds its message on that key's partition.
    user, decisions = fold([shopper.order("o1", ("p1",))], RULES, user)
    assert [(c.nudge_id, c.user_key) for c in cancellations(decisions)] == [
        (rescue.nudge_id, rescue.user_key)
    ]
    assert rescue.user_key == "anon-9"


def test_an_anonymous_cart_is_rescued_once_after_identify():
    shopper = Shopper("anon-7")
    anon, _ = fold(browse_and_cart(shopper), RULES)
    user, decisions, _ = hand_over(anon, shopper.identify("u7"))
    assert decisions == []
    user, fired = run_until(user, shopper.clock + 10 * TIMEOUT, RULES)
    [rescue] = nudges(fired, "cart_rescue")
    assert rescue.user_key == "u7" and rescue.user_id == "u7"


def test_merging_into_an_existing_user_keeps_one_cart_and_adds_scores():
    known = Shopper("anon-old", "u5", seed=2)
    user, _ = fold([known.consent(), known.view("p1"), known.add("p2")], RULES)
    shopper = Shopper("anon-new", seed=3)
    anon, _ = fold([shopper.view("p1"), shopper.add("p1")], RULES)
    user_p1 = user.products["p1"].total
    user, decisions, _ = hand_over(anon, shopper.identify("u5"), user)
    assert decisions == []
    assert set(user.cart.items) == {"p1", "p2"}
    assert user.products["p1"].total > user_p1
    user, fired = run_until(user, shopper.clock + 10 * TIMEOUT, RULES)
    assert len(nudges(fired, "cart_rescue")) == 1


def test_without_consent_nudges_are_recorded_as_suppressed():
    shopper = Shopper()
    events = [e for e in browse_and_cart(shopper) if e.name != "consent"]
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert (rescue.status, rescue.reason, rescue.channels) == ("suppressed", "no_consent", ())


def test_whatsapp_consent_without_a_known_phone_is_not_deliverable():
    shopper = Shopper()
    events = [shopper.consent("whatsapp", phone=False), *browse_and_cart(shopper)[1:]]
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert rescue.reason == "no_consent"


def test_revoked_consent_suppresses():
    shopper = Shopper()
    events = [*browse_and_cart(shopper), shopper.consent("whatsapp", granted=False)]
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert rescue.reason == "no_consent"
    assert "+49" not in state_to_bytes(state).decode()


def test_consent_to_order_updates_only_does_not_allow_nudges():
    # The demo's "order updates on WhatsApp": a consent without a purpose is transactional.
    shopper = Shopper()
    events = [shopper.consent("whatsapp", purpose=None), *browse_and_cart(shopper)[1:]]
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert (rescue.status, rescue.reason, rescue.channels) == ("suppressed", "no_consent", ())


def test_each_purpose_is_granted_and_revoked_on_its_own():
    shopper = Shopper()
    events = [
        shopper.consent("whatsapp", purpose="transactional"),
        *browse_and_cart(shopper),  # marketing granted
        shopper.consent("whatsapp", granted=False, purpose="transactional"),
    ]
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert (rescue.status, rescue.channels) == ("emit", ("whatsapp",))

    shopper = Shopper()
    events = [
        *browse_and_cart(shopper),
        shopper.consent("whatsapp", purpose="transactional"),
        shopper.consent("whatsapp", granted=False, purpose="marketing"),
    ]
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert rescue.reason == "no_consent"
    assert state.consent["whatsapp"][0] & MARKETING == 0


def test_a_vip_upgrade_names_only_channels_consented_for_marketing():
    shopper = Shopper(user_id="u1")
    events = [
        shopper.consent("whatsapp", purpose=None),  # order updates
        shopper.consent("sms", purpose="marketing"),
        *(shopper.order(f"o{i}") for i in range(3)),
    ]
    _state, decisions = fold(events, RULES)
    [vip] = upgrades(decisions)
    assert vip.channels == ("sms",)


def test_a_late_marketing_grant_does_not_undo_a_newer_revoke():
    shopper = Shopper()
    grant = shopper.consent("whatsapp")
    revoke = shopper.consent("whatsapp", granted=False)
    events = [*browse_and_cart(shopper)[1:], revoke, grant]  # the grant arrives late
    state, _ = fold(events, RULES)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert rescue.reason == "no_consent"


def test_a_state_stored_before_purposes_reads_its_consent_as_order_updates():
    shopper = Shopper()
    state, _ = fold([shopper.view("p1")], RULES)
    state.consent["whatsapp"] = [1 | 2, to_ms(NOON)]  # [granted | has phone, ms]
    state = state_from_bytes(state_to_bytes(state))
    state, _ = fold([shopper.add("p1", qty=1, price=5.0)], RULES, state)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, RULES)
    assert rescue.reason == "no_consent"
    state, _ = fold([shopper.consent("whatsapp", phone=False)], RULES, state)
    assert state.consent["whatsapp"][:2] == [1 | 2 | MARKETING, to_ms(NOON)]


def test_holdout_users_are_recorded_as_suppressed_holdout():
    rules = rules_with(suppression={"holdout_share": 1.0})
    shopper = Shopper()
    state, _ = fold(browse_and_cart(shopper), rules)
    state, [rescue] = run_until(state, shopper.clock + TIMEOUT, rules)
    assert (rescue.status, rescue.reason) == ("suppressed", "holdout")
    assert rescue.channels == ("whatsapp",)  # would have been sent there


def test_frequency_cap_counts_all_kinds_per_local_day():
    rules = rules_with(suppression={"frequency_cap_per_day": 1})
    shopper = Shopper(timezone="America/New_York")
    state, _ = fold(browse_and_cart(shopper), rules)
    state, [first] = run_until(state, shopper.clock + TIMEOUT, rules)
    assert first.status == "emit"
    # A high-intent product the same local day is capped.
    shopper.at(shopper.clock + TIMEOUT)
    state, decisions = fold([shopper.linger("p9", 40_000) for _ in range(3)], rules, state)
    [capped] = nudges(decisions, "high_intent")
    assert (capped.status, capped.reason) == ("suppressed", "frequency_cap")
    # 12:00 UTC + a day is the next day in New York too.
    shopper.at(NOON + timedelta(days=1))
    state, decisions = fold([shopper.linger("p8", 40_000) for _ in range(3)], rules, state)
    assert [n.status for n in nudges(decisions)] == ["emit"]


def test_high_intent_fires_once_then_needs_hysteresis_and_cooldown():
    shopper = Shopper()
    lingering = [shopper.linger("p5", 40_000, after_s=5) for _ in range(4)]
    state, decisions = fold([shopper.consent(), *lingering], RULES)
    [first] = nudges(decisions, "high_intent")
    assert first.product_id == "p5" and first.status == "emit"
    assert first.score >= RULES.high_intent.threshold
    assert first.signals[0][0] == "spec_linger"

    # Still high: no repeat.
    state, decisions = fold([shopper.linger("p5", 40_000) for _ in range(3)], RULES, state)
    assert nudges(decisions) == []

    # A day and a half later the score has decayed (re-armed) and the cooldown is over.
    shopper.at(shopper.clock + timedelta(hours=36))
    state, decisions = fold([shopper.linger("p5", 40_000) for _ in range(4)], RULES, state)
    [second] = nudges(decisions, "high_intent")
    assert second.nudge_id != first.nudge_id
    assert state.products["p5"].crossings == 2


def test_quiet_hours_hold_until_they_end():
    rules = rules_with(
        suppression={"quiet_hours": {"start": "21:00", "end": "08:00", "max_hold_s": 43_200}}
    )
    shopper = Shopper(timezone="Europe/Berlin", start=NOON.replace(hour=20))  # 21:00 Berlin
    state, _ = fold(browse_and_cart(shopper), rules)
    deadline = shopper.clock + TIMEOUT
    state, [held] = run_until(state, deadline, rules)
    release = NOON.replace(day=21, hour=7)  # 08:00 in Berlin (UTC+1)
    # The hold is announced at once (visible before the nudge is released), never sent.
    assert isinstance(held, NudgeHeld)
    assert (held.reason, held.held_at, held.release_at) == ("quiet_hours", deadline, release)
    assert next_deadline(state) == to_ms(release)
    state, early = run_until(state, release - timedelta(seconds=1), rules)
    assert early == []
    state, [rescue] = run_until(state, release, rules)
    assert rescue.status == "emit" and rescue.nudge_id == held.nudge_id
    assert (rescue.triggered_at, rescue.decided_at) == (deadline, release)
    assert rescue.timezone == "Europe/Berlin"  # the dispatcher's quiet hours use it
    assert next_deadline(state) is None

    # The order then cancels what was sent.
    shopper.at(release)
    state, decisions = fold([shopper.order("o1")], rules, state)
    assert [c.nudge_id for c in cancellations(decisions)] == [rescue.nudge_id]


def test_quiet_hours_longer_than_the_maximum_hold_go_stale():
    rules = rules_with(
        suppression={"quiet_hours": {"start": "21:00", "end": "08:00", "max_hold_s": 3600}}
    )
    shopper = Shopper(timezone="Europe/Berlin", start=NOON.replace(hour=20))
    state, _ = fold(browse_and_cart(shopper), rules)
    deadline = shopper.clock + TIMEOUT
    state, _ = run_until(state, deadline, rules)
    state, [stale] = run_until(state, deadline + timedelta(hours=1), rules)
    assert (stale.status, stale.reason) == ("suppressed", "quiet_hours_stale")
    assert stale.decided_at == deadline + timedelta(hours=1)


def test_an_order_during_the_hold_withdraws_the_held_rescue():
    rules = rules_with(
        suppression={"quiet_hours": {"start": "21:00", "end": "08:00", "max_hold_s": 43_200}}
    )
    shopper = Shopper(timezone="Europe/Berlin", start=NOON.replace(hour=20))
    state, _ = fold(browse_and_cart(shopper), rules)
    state, _ = run_until(state, shopper.clock + TIMEOUT, rules)
    shopper.at(shopper.clock + TIMEOUT)
    state, decisions = fold([shopper.order("o1", after_s=600)], rules, state)
    [withdrawn] = nudges(decisions)
    assert (withdrawn.status, withdrawn.reason) == ("suppressed", "order_placed")
    assert cancellations(decisions) == [] and next_deadline(state) is None


def test_a_duplicate_event_is_ignored():
    shopper = Shopper()
    events = browse_and_cart(shopper)
    once, _ = fold(events, RULES)
    twice, _ = fold([*events, events[3], events[1]], RULES)
    assert state_to_bytes(once) == state_to_bytes(twice)


def test_decision_times_are_event_times():
    shopper = Shopper()
    state, _ = fold(browse_and_cart(shopper), RULES)
    deadline = next_deadline(state)
    assert deadline is not None
    # Advancing far past the deadline still stamps the deadline, not the watermark.
    state, [rescue] = run_until(state, to_datetime(deadline) + timedelta(days=3), RULES)
    assert rescue.decided_at == to_datetime(deadline)


def hot(shopper: Shopper, product: str = "p5") -> list:
    """Lingering on a product's specs until its high-intent nudge fires."""
    return [shopper.linger(product, 40_000, after_s=5) for _ in range(4)]


def test_buying_the_product_withdraws_its_high_intent_nudge_the_dispatcher_may_hold():
    # The dispatcher may hold it for the shopper's best hour (or quiet hours, a paused
    # channel): a discount on what was just bought must not follow the purchase.
    shopper = Shopper()
    state, decisions = fold([shopper.consent(), *hot(shopper)], RULES)
    [sent] = nudges(decisions, "high_intent")
    state, decisions = fold([shopper.order("o1", ("p5",), after_s=3600)], RULES, state)
    [withdrawn] = cancellations(decisions)
    assert (withdrawn.nudge_id, withdrawn.kind, withdrawn.reason) == (
        sent.nudge_id,
        "high_intent",
        "order_placed",
    )
    assert withdrawn.user_key == sent.user_key and state.hi_sent == []
    # Once withdrawn, a second order of it withdraws nothing more.
    state, decisions = fold([shopper.order("o2", ("p5",))], RULES, state)
    assert cancellations(decisions) == []


def test_buying_something_else_or_after_the_maximum_age_withdraws_nothing():
    shopper = Shopper()
    state, _ = fold([shopper.consent(), *hot(shopper)], RULES)
    state, decisions = fold([shopper.order("o1", ("p1",))], RULES, state)
    assert cancellations(decisions) == [] and len(state.hi_sent) == 1
    # Past the kind's maximum age the dispatcher has expired it: nothing to withdraw.
    shopper.at(shopper.clock + timedelta(seconds=RULES.dispatch.max_age_s.high_intent + 1))
    state, decisions = fold([shopper.order("o2", ("p5",))], RULES, state)
    assert cancellations(decisions) == [] and state.hi_sent == []


def test_a_suppressed_high_intent_nudge_is_never_withdrawn():
    shopper = Shopper()  # no consent: recorded as suppressed, never sent
    state, decisions = fold(hot(shopper), RULES)
    [suppressed] = nudges(decisions, "high_intent")
    assert suppressed.status == "suppressed"
    state, decisions = fold([shopper.order("o1", ("p5",))], RULES, state)
    assert cancellations(decisions) == [] and state.hi_sent == []


def test_a_high_intent_nudge_released_from_quiet_hours_is_withdrawn_by_an_order():
    rules = rules_with(
        suppression={"quiet_hours": {"start": "21:00", "end": "08:00", "max_hold_s": 43_200}}
    )
    shopper = Shopper(timezone="Europe/Berlin", start=NOON.replace(hour=21))
    state, decisions = fold([shopper.consent(), *hot(shopper)], rules)
    assert nudges(decisions, "high_intent") == []  # held by the engine
    state, decisions = run_until(state, NOON.replace(hour=8) + timedelta(days=1), rules)
    [released] = nudges(decisions, "high_intent")
    assert released.status == "emit"
    shopper.at(NOON.replace(hour=9) + timedelta(days=1))
    state, decisions = fold([shopper.order("o1", ("p5",))], rules, state)
    assert [c.nudge_id for c in cancellations(decisions)] == [released.nudge_id]


def test_an_anonymous_nudge_is_withdrawn_under_its_own_key_after_identify():
    shopper = Shopper("anon-7")
    anon_state, decisions = fold([shopper.consent(), *hot(shopper)], RULES)
    [sent] = nudges(decisions, "high_intent")
    user_state, _, _ = hand_over(anon_state, shopper.identify("u-7"))
    state, decisions = fold([shopper.order("o1", ("p5",))], RULES, user_state)
    [withdrawn] = cancellations(decisions)
    assert (withdrawn.nudge_id, withdrawn.user_key) == (sent.nudge_id, sent.user_key)
    assert sent.user_key != state.key  # its dispatcher partition is the anonymous key's
