"""Send-time optimisation for high-intent nudges (policy.aim, the dispatcher's gate).

A rule may send its high-intent nudges at each shopper's best hour, learned in recorded
snapshots: the aim is a function of the decision (its time, nudge id, shopper, zone) and
the snapshot in force at the decision time only; the dispatcher holds the nudge until
then, and quiet hours, staleness and the daily cap still win at release. Cart rescues
are never aimed, and admin force-sends skip it. Times are data here: no clock is read.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.campaigns.best_hour import HOURS, in_control
from pipeline.dispatch import policy
from pipeline.dispatch.records import message_key
from pipeline.dispatch.send_hours import HourSnapshot, learned_hour
from pipeline.domain.rules import RulesError, default_rules, parse_rules
from schemas.time import epoch_ms

from .test_send_time import decide, make, nudge, receipts, steps

# 10:00 UTC: daytime in UTC (no quiet hours), 14 h before the next 00:00.
MORNING = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
MORNING_MS = epoch_ms(MORNING)
HOUR_MS = 3_600_000


def best_rules(max_age_s: int | None = None, **send_time: Any):
    raw = default_rules().model_dump()
    if max_age_s is not None:
        raw["dispatch"]["max_age_s"]["high_intent"] = max_age_s
    raw["high_intent"]["send_time"] = {"mode": "best_hour", "control_share": 0.0, **send_time}
    return parse_rules(raw, source="test")


def snapshot(at_ms: int, hours: dict[str, int], peak: int | None = None) -> HourSnapshot:
    population = [0] * HOURS
    if peak is not None:
        population[peak] = 10
    return HourSnapshot(f"s@{at_ms}", at_ms, hours, tuple(population))


def aim(the_rules, n=None, *, kind="high_intent", user="u1", decided_ms=MORNING_MS, **kw):
    return policy.aim(
        policy.SendRules.of(the_rules),
        kind,
        n or f"{1:032x}",
        user,
        decided_ms,
        kw.pop("timezone", None),
        kw.pop("snapshots", [snapshot(0, {"u1": 14}, peak=9)]),
        **kw,
    )


# --- the rules ----------------------------------------------------------------------


def test_the_default_is_as_decided_and_nothing_is_aimed() -> None:
    assert default_rules().high_intent.send_time.mode == "as_decided"
    assert aim(default_rules()) is None


def test_a_cart_rescue_has_no_send_time_setting() -> None:
    raw = default_rules().model_dump()
    raw["cart_rescue"]["send_time"] = {"mode": "best_hour"}
    with pytest.raises(RulesError, match=r"cart_rescue\.send_time"):
        parse_rules(raw, source="test")


def test_a_delay_that_would_outlive_the_nudge_is_refused() -> None:
    with pytest.raises(RulesError, match="max_delay_s"):
        best_rules(max_delay_s=57_600)  # dispatch.max_age_s.high_intent
    assert best_rules(max_delay_s=57_599).high_intent.send_time.max_delay_s == 57_599


# --- the aim ------------------------------------------------------------------------


def test_a_cart_rescue_and_a_forced_send_are_never_aimed() -> None:
    the_rules = best_rules()
    assert aim(the_rules, kind="cart_rescue") is None
    assert aim(the_rules, forced=True) is None
    assert aim(the_rules) == policy.Aim("best_hour", 14, MORNING_MS + 4 * HOUR_MS)


def test_the_aim_is_the_next_start_of_the_hour_in_the_shoppers_zone() -> None:
    # 10:00 UTC is 05:00 in New York: 14:00 there is 19:00 UTC.
    new_york = aim(best_rules(), timezone="America/New_York")
    assert new_york == policy.Aim("best_hour", 14, epoch_ms(MORNING + timedelta(hours=9)))
    # 19:00 in Tokyo: 14:00 there is 19 h away, beyond the 12 h default delay.
    assert aim(best_rules(), timezone="Asia/Tokyo") == policy.Aim("best_hour", None, MORNING_MS)
    # Decided during the hour itself: it goes at once.
    inside = MORNING_MS + 4 * HOUR_MS + 60_000
    assert aim(best_rules(), decided_ms=inside) == policy.Aim("best_hour", 14, inside)


def test_an_hour_later_than_the_maximum_delay_goes_as_decided() -> None:
    late = aim(best_rules(max_delay_s=4 * 3600 - 1))
    assert late == policy.Aim("best_hour", None, MORNING_MS)
    assert aim(best_rules(max_delay_s=4 * 3600)) == policy.Aim(
        "best_hour", 14, MORNING_MS + 4 * HOUR_MS
    )


def test_the_snapshot_in_force_at_the_decision_time_decides() -> None:
    older = snapshot(0, {"u1": 14}, peak=9)
    newer = snapshot(MORNING_MS, {"u1": 16}, peak=9)
    both = [older, newer]
    assert aim(best_rules(), decided_ms=MORNING_MS - 1, snapshots=both).hour == 14
    assert aim(best_rules(), decided_ms=MORNING_MS, snapshots=both).hour == 16
    # Before the first snapshot, nothing is learned: as decided.
    assert aim(best_rules(), snapshots=[newer], decided_ms=MORNING_MS - 1) == policy.Aim(
        "best_hour", None, MORNING_MS - 1
    )


def test_a_shopper_without_history_gets_the_populations_hour_else_none() -> None:
    assert learned_hour([snapshot(0, {}, peak=20)], "new-shopper", MORNING_MS) == 20
    assert learned_hour([snapshot(0, {})], "new-shopper", MORNING_MS) is None
    assert aim(best_rules(), user="u2").hour is None  # peak 9 is next day: beyond 12 h


def test_the_control_arm_is_stable_per_shopper_and_about_its_share() -> None:
    the_rules = best_rules(control_share=0.2)
    users = [f"user-{i}" for i in range(2000)]
    arms = {u: aim(the_rules, user=u).arm for u in users}
    # The same shopper is in the same arm for every nudge and every dispatcher.
    for u in users[:50]:
        assert {aim(the_rules, f"{n:032x}", user=u).arm for n in range(1, 6)} == {arms[u]}
    share = sum(a == "random_hour" for a in arms.values()) / len(users)
    assert 0.17 < share < 0.23, share
    assert all((arms[u] == "random_hour") == in_control("high_intent", u, 0.2) for u in users)
    # The random arm's hours are spread over the day, per nudge.
    controls = [u for u in users if arms[u] == "random_hour"]
    wide = best_rules(max_age_s=86_400, control_share=1.0, max_delay_s=86_399)
    hours = {aim(wide, f"{n:032x}", user=controls[0]).hour for n in range(1, 200)}
    assert len(hours) == HOURS


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def _skipped(day: datetime, hour: int, tz: ZoneInfo) -> bool:
    """Whether ``hour`` o'clock does not exist on that local day (a spring-forward gap)."""
    wall = day.replace(hour=hour, minute=0, second=0, microsecond=0, tzinfo=None)
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).hour != hour


@settings(max_examples=400, deadline=None)
@given(
    decided_ms=st.integers(
        epoch_ms(datetime(2025, 1, 1, tzinfo=UTC)), epoch_ms(datetime(2028, 1, 1, tzinfo=UTC))
    ),
    hour=st.integers(0, 23),
    peak=st.integers(0, 23) | st.none(),
    tz=st.sampled_from(ZONES),
    max_delay_s=st.integers(0, 57_599),
    share=st.sampled_from([0.0, 0.2, 1.0]),
    known=st.booleans(),
)
def test_the_aim_is_the_decision_or_the_start_of_the_hour_within_the_delay(
    decided_ms, hour, peak, tz, max_delay_s, share, known
) -> None:
    the_rules = best_rules(max_delay_s=max_delay_s, control_share=share)
    snapshots = [snapshot(0, {"u1": hour} if known else {}, peak=peak)]
    got = aim(the_rules, decided_ms=decided_ms, timezone=tz, snapshots=snapshots)
    assert got is not None
    again = aim(the_rules, decided_ms=decided_ms, timezone=tz, snapshots=list(snapshots))
    assert got == again  # a function of the decision and the snapshot only
    assert decided_ms <= got.at_ms <= decided_ms + max_delay_s * 1000
    if got.hour is None:
        assert got.at_ms == decided_ms
        return
    local = datetime.fromtimestamp(got.at_ms / 1000, UTC).astimezone(ZoneInfo(tz))
    if got.at_ms == decided_ms:  # decided within the hour itself
        assert local.hour == got.hour
    else:
        assert (local.minute, local.second) == (0, 0)
        assert local.hour == got.hour or _skipped(local, got.hour, ZoneInfo(tz))
    if got.arm == "best_hour":
        assert got.hour == (hour if known else peak)


# --- the dispatcher -----------------------------------------------------------------


def test_a_nudge_is_held_until_its_best_hour_then_sent_with_its_arm() -> None:
    d, store, channels = make(the_rules=best_rules())
    d.hour_snapshots = [snapshot(0, {"u1": 14})]
    decide(d, nudge(triggered=MORNING), now_ms=MORNING_MS + 1000)
    held = receipts(d)
    assert [(r.status, r.detail) for r in held] == [
        ("held", "send_time_until:2026-12-04T14:00:00Z")
    ]
    assert (held[0].send_arm, held[0].send_hour) == ("best_hour", 14)
    assert channels["whatsapp"].sent == [] and d.pending() == 1
    record = store.get(message_key(f"{1:032x}"), 0)
    assert (record.stage, record.hold, record.held_ms) == ("held", "send_time", None)

    asyncio.run(d.tick(MORNING_MS + 4 * HOUR_MS - 1))
    assert d.drain() == []
    asyncio.run(d.tick(MORNING_MS + 4 * HOUR_MS))
    sent = receipts(d)
    assert [(r.status, r.send_arm, r.send_hour) for r in sent] == [("sent", "best_hour", 14)]
    assert channels["whatsapp"].sent == [f"{1:032x}"]


def test_a_dispatcher_catching_up_aims_from_the_decision_time() -> None:
    d, _, channels = make(the_rules=best_rules())
    d.hour_snapshots = [snapshot(0, {"u1": 14})]
    # Seen at 15:00, after the aimed 14:00: it goes at once, with its arm and hour.
    decide(d, nudge(triggered=MORNING), now_ms=MORNING_MS + 5 * HOUR_MS)
    assert [(r.status, r.send_arm, r.send_hour) for r in receipts(d)] == [("sent", "best_hour", 14)]
    assert channels["whatsapp"].sent == [f"{1:032x}"]


def test_quiet_hours_still_win_after_the_best_hour() -> None:
    d, _, channels = make(the_rules=best_rules())
    d.hour_snapshots = [snapshot(0, {"u1": 22})]  # in the default quiet hours (21-08)
    decide(d, nudge(triggered=MORNING), now_ms=MORNING_MS)
    assert steps(d) == [("held", "send_time_until:2026-12-04T22:00:00Z")]
    asyncio.run(d.tick(MORNING_MS + 12 * HOUR_MS))
    assert steps(d) == [("held", "quiet_hours_until:2026-12-05T08:00:00Z")]
    assert channels["whatsapp"].sent == []


def test_a_release_from_the_best_hour_over_the_daily_cap_is_suppressed() -> None:
    d, _, channels = make(the_rules=best_rules(), daily_cap=1)
    d.hour_snapshots = [snapshot(0, {"u1": 14})]
    decide(d, nudge(1, triggered=MORNING), now_ms=MORNING_MS)
    assert [s for s, _ in steps(d)] == ["held"]
    rescue = nudge(
        2,
        kind="cart_rescue",
        product_id=None,
        cart_id="c1",
        items=({"product_id": "p1", "quantity": 1, "price": 5.0},),
        triggered=MORNING + timedelta(hours=1),
    )
    # A cart rescue never waits for a best hour, and carries no arm.
    decide(d, rescue, now_ms=MORNING_MS + HOUR_MS)
    assert [(r.status, r.send_arm) for r in receipts(d)] == [("sent", None)]
    asyncio.run(d.tick(MORNING_MS + 4 * HOUR_MS))
    held = [(r.status, r.detail) for r in receipts(d) if r.message_id == f"{1:032x}"]
    assert held == [("suppressed", "frequency_cap")]
    assert f"{1:032x}" not in channels["whatsapp"].sent + channels["sms"].sent


def test_a_forced_send_skips_the_best_hour() -> None:
    d, _, channels = make(the_rules=best_rules())
    d.hour_snapshots = [snapshot(0, {"u1": 14})]
    decide(d, nudge(triggered=MORNING, origin="admin_force"), now_ms=MORNING_MS)
    assert [(r.status, r.send_arm) for r in receipts(d)] == [("sent", None)]
    assert channels["whatsapp"].sent == [f"{1:032x}"]


def test_as_decided_rules_send_at_once_without_an_arm() -> None:
    d, _, _ = make()
    d.hour_snapshots = [snapshot(0, {"u1": 14})]
    decide(d, nudge(triggered=MORNING), now_ms=MORNING_MS)
    assert [(r.status, r.send_arm, r.send_hour) for r in receipts(d)] == [("sent", None, None)]
