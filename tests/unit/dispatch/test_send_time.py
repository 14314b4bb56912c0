"""Send-time checks: a decision too old is expired, quiet hours in the shopper's zone hold
it until they end (or expire it), forced sends skip both but never consent, and every
non-send leaves a receipt and an audit row.

The dispatcher's clock is ``now_ms``, pinned here; zones are fixed-offset so that no
result depends on the hour the tests run at or on daylight saving.
"""

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.dispatch import policy
from pipeline.dispatch.channels import Outgoing, SendResult
from pipeline.dispatch.directory import Contact
from pipeline.dispatch.dispatcher import Dispatcher
from pipeline.dispatch.records import MessageRecord, message_key
from pipeline.domain.clock import quiet_until, zone
from pipeline.domain.rules import default_rules, parse_rules
from schemas.messages import Nudge, NudgeCancellation, NudgeHeld, Receipt
from schemas.time import epoch_ms

from .test_fallback_grace import MemoryStore, settings

# 23:00 UTC: inside the default quiet hours (21:00-08:00) in zone UTC.
NIGHT = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
NIGHT_MS = epoch_ms(NIGHT)
MORNING_MS = epoch_ms(datetime(2026, 12, 5, 8, 0, tzinfo=UTC))
# Etc/GMT-12 is UTC+12: 11:00 local at NIGHT, daytime.
DAY_ZONE = "Etc/GMT-12"


class Reachable:
    """Everyone consented to WhatsApp and SMS, with a phone (sealed elsewhere)."""

    def __init__(self, consented: tuple[str, ...] = ("whatsapp", "sms")) -> None:
        self.consented = set(consented)
        self.lookups = 0

    def contacts(self, subjects: dict[str, list[str]]) -> dict[str, Contact]:
        self.lookups += 1
        phones: dict[str, Any] = {c: f"sealed-{c}" for c in self.consented}
        return {user: Contact(set(self.consented), phones=phones) for user in subjects}

    def phone(self, sealed: Any) -> str:
        return "+15550000000"


class Provider:
    """Stands in for the provider's API in unit tests: takes every message."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.sent: list[str] = []

    async def send(self, message: Outgoing) -> SendResult:
        await asyncio.sleep(0)  # a network call: other sends run meanwhile
        self.sent.append(message.message_id)
        return SendResult(provider_message_id=f"{self.channel}-{len(self.sent)}")


def rules(**quiet: Any):
    raw = default_rules().model_dump()
    raw["suppression"]["quiet_hours"].update(quiet)
    return parse_rules(raw, source="test")


def make(directory: Reachable | None = None, the_rules=None, **overrides: Any):
    store = MemoryStore()
    channels = {"whatsapp": Provider("whatsapp"), "sms": Provider("sms")}
    d = Dispatcher(
        store,
        directory or Reachable(),  # type: ignore[arg-type]
        channels,  # type: ignore[arg-type]
        settings(**overrides),
        "receipts",
        the_rules or default_rules(),
    )
    return d, store, channels


def nudge(
    n: int = 1,
    triggered: datetime = NIGHT,
    timezone: str | None = None,
    rules_version: str = "r1",
    **fields: Any,
) -> Nudge:
    values: dict[str, Any] = {
        "nudge_id": f"{n:032x}",
        "kind": "high_intent",
        "user_key": "u1",
        "status": "emit",
        "triggered_at": triggered,
        "decided_at": triggered,
        "product_id": "p1",
        "discount_percent": 10,
        "score": 9.0,
        "rules_version": rules_version,
        "trigger_event_id": "e1",
        "timezone": timezone,
    }
    values.update(fields)
    return Nudge(**values)


def receipts(d: Dispatcher) -> list[Receipt]:
    return [Receipt.model_validate_json(value) for _, _, value, _ in d.drain()]


def steps(d: Dispatcher) -> list[tuple[str, str | None]]:
    return [(r.status, r.detail) for r in receipts(d)]


def decide(d: Dispatcher, *decisions: Any, now_ms: int) -> None:
    asyncio.run(d.on_decisions([(0, x.to_json()) for x in decisions], now_ms))


# --- staleness ----------------------------------------------------------------------


def test_a_decision_older_than_its_maximum_age_is_expired_not_sent() -> None:
    d, store, channels = make()
    five_days_ago = NIGHT - timedelta(days=5)
    decide(d, nudge(triggered=five_days_ago, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    assert steps(d) == [("expired", "stale")]
    assert channels["whatsapp"].sent == [] and channels["sms"].sent == []
    record = store.get(message_key(f"{1:032x}"), 0)
    assert (record.stage, record.outcome) == ("done", "expired")


def test_an_age_within_the_maximum_is_sent() -> None:
    d, _, channels = make()
    # high_intent may be 16 h old.
    decide(d, nudge(triggered=NIGHT - timedelta(hours=15), timezone=DAY_ZONE), now_ms=NIGHT_MS)
    assert [s for s, _ in steps(d)] == ["sent"]
    assert channels["whatsapp"].sent == [f"{1:032x}"]


# --- quiet hours --------------------------------------------------------------------


def test_a_send_in_quiet_hours_is_held_then_released_when_they_end() -> None:
    directory = Reachable()
    d, store, channels = make(directory)
    # Triggered at 22:30 UTC, the shopper's zone unknown: the rules' default (UTC).
    decide(d, nudge(triggered=NIGHT - timedelta(minutes=30)), now_ms=NIGHT_MS)
    assert steps(d) == [("held", "quiet_hours_until:2026-12-05T08:00:00Z")]
    assert channels["whatsapp"].sent == [] and d.pending() == 1

    lookups = directory.lookups
    asyncio.run(d.tick(NIGHT_MS + 3_600_000))  # not every tick: only at the release
    assert directory.lookups == lookups and d.drain() == []

    asyncio.run(d.tick(MORNING_MS))
    assert [s for s, _ in steps(d)] == ["sent"]
    assert channels["whatsapp"].sent == [f"{1:032x}"]
    assert store.get(message_key(f"{1:032x}"), 0).stage == "awaiting"


def test_the_shoppers_zone_decides_not_the_servers() -> None:
    d, _, _ = make()
    decide(d, nudge(timezone=DAY_ZONE), now_ms=NIGHT_MS)  # 11:00 for the shopper
    assert [s for s, _ in steps(d)] == ["sent"]
    d2, _, _ = make()
    decide(d2, nudge(timezone="Etc/GMT+3"), now_ms=NIGHT_MS)  # 20:00: still evening
    assert [s for s, _ in steps(d2)] == ["sent"]
    d3, _, _ = make()
    decide(d3, nudge(timezone="Etc/GMT-3"), now_ms=NIGHT_MS)  # 02:00 (UTC+3)
    assert steps(d3) == [("held", "quiet_hours_until:2026-12-05T05:00:00Z")]


def test_a_hold_longer_than_the_maximum_expires() -> None:
    d, _, channels = make(the_rules=rules(max_hold_s=3600))
    decide(d, nudge(triggered=NIGHT), now_ms=NIGHT_MS)
    assert [s for s, _ in steps(d)] == ["held"]
    asyncio.run(d.tick(NIGHT_MS + 3_600_000))
    assert steps(d) == [("expired", "quiet_hours_max_hold")]
    assert channels["whatsapp"].sent == [] and d.pending() == 0


def test_a_held_decision_that_goes_stale_expires_at_its_maximum_age() -> None:
    d, _, channels = make()
    # cart_rescue may be 16 h old: triggered 10:00, stale after 02:00, before the release.
    rescue = nudge(
        kind="cart_rescue",
        product_id=None,
        cart_id="c1",
        items=({"product_id": "p1", "quantity": 1, "price": 5.0},),
        triggered=NIGHT - timedelta(hours=13),
    )
    decide(d, rescue, now_ms=NIGHT_MS)
    assert [s for s, _ in steps(d)] == ["held"]
    asyncio.run(d.tick(NIGHT_MS + 3 * 3_600_000))  # 02:00: not yet older than 4 h
    assert d.drain() == []
    asyncio.run(d.tick(NIGHT_MS + 3 * 3_600_000 + 1))
    assert steps(d) == [("expired", "stale")]
    assert channels["whatsapp"].sent == []


def test_an_order_during_the_hold_cancels_it() -> None:
    d, _, channels = make()
    decide(d, nudge(), now_ms=NIGHT_MS)
    receipts(d)
    cancel = NudgeCancellation(
        nudge_id=f"{1:032x}",
        kind="high_intent",
        user_key="u1",
        reason="order_placed",
        at=NIGHT + timedelta(minutes=5),
        rules_version="r1",
        trigger_event_id="e9",
    )
    decide(d, cancel, now_ms=NIGHT_MS + 300_000)
    assert steps(d) == [("cancelled", "order_placed")]
    asyncio.run(d.tick(MORNING_MS))
    assert d.drain() == [] and channels["whatsapp"].sent == []


def test_a_consent_revoked_during_the_hold_cancels_it_at_release() -> None:
    directory = Reachable()
    d, _, channels = make(directory)
    decide(d, nudge(), now_ms=NIGHT_MS)
    receipts(d)
    directory.consented = set()
    asyncio.run(d.tick(MORNING_MS))
    assert steps(d) == [("cancelled", "consent_revoked")]
    assert channels["whatsapp"].sent == [] and channels["sms"].sent == []


def test_a_release_over_the_daily_cap_is_suppressed() -> None:
    d, _, channels = make(daily_cap=1)
    decide(d, nudge(1), now_ms=NIGHT_MS)
    receipts(d)
    # Another message for the same shopper goes out in the shopper's day before the release.
    decide(d, nudge(2, timezone=DAY_ZONE, triggered=NIGHT + timedelta(hours=8)), now_ms=MORNING_MS)
    assert [s for s, _ in steps(d)] == ["sent"]
    asyncio.run(d.tick(MORNING_MS))
    assert steps(d) == [("suppressed", "frequency_cap")]
    assert channels["whatsapp"].sent == [f"{2:032x}"]


def test_two_releases_in_one_tick_share_the_daily_cap() -> None:
    d, _, channels = make(daily_cap=1)
    decide(d, nudge(1), now_ms=NIGHT_MS)
    decide(d, nudge(2, product_id="p2"), now_ms=NIGHT_MS + 1)  # nothing sent yet: held too
    assert [s for s, _ in steps(d)] == ["held", "held"]
    asyncio.run(d.tick(MORNING_MS))
    assert sorted(steps(d)) == [("sent", None), ("suppressed", "frequency_cap")]
    assert len(channels["whatsapp"].sent) == 1


def test_without_consent_nothing_is_held() -> None:
    d, _, _ = make(Reachable(consented=()))
    decide(d, nudge(), now_ms=NIGHT_MS)
    assert steps(d) == [("suppressed", "no_consent")]
    assert d.pending() == 0


# --- forced admin sends -------------------------------------------------------------


def test_a_forced_send_skips_quiet_hours_and_staleness() -> None:
    d, _, channels = make()
    old = nudge(triggered=NIGHT - timedelta(days=5), origin="admin_force")
    decide(d, old, now_ms=NIGHT_MS)
    assert [s for s, _ in steps(d)] == ["sent"]
    assert channels["whatsapp"].sent == [f"{1:032x}"]


def test_a_forced_send_never_skips_consent() -> None:
    d, _, _ = make(Reachable(consented=()))
    decide(d, nudge(origin="admin_force"), now_ms=NIGHT_MS)
    assert steps(d) == [("suppressed", "no_consent")]


# --- the engine's non-sends are audited -----------------------------------------------


def test_the_engines_holds_and_suppressions_are_audited_never_sent() -> None:
    d, _, channels = make()
    held = NudgeHeld(
        nudge_id=f"{7:032x}",
        kind="high_intent",
        user_key="u1",
        held_at=NIGHT,
        release_at=NIGHT + timedelta(hours=9),
        rules_version="r1",
        trigger_event_id="e7",
    )
    holdout = nudge(8, timezone=DAY_ZONE, status="suppressed", reason="holdout")
    decide(d, held, holdout, now_ms=NIGHT_MS)
    assert d.drain() == [] and channels["whatsapp"].sent == []
    audit = d.drain_audit()
    assert [(row[2], row[5], row[7], row[8]) for row in audit] == [
        ("engine", f"{7:032x}", "held", "quiet_hours_until:2026-12-05T08:00:00Z"),
        ("engine", f"{8:032x}", "suppressed", "holdout"),
    ]


# --- the pure gate ------------------------------------------------------------------

SEND_RULES = policy.SendRules.of(default_rules())
ZONES = st.sampled_from([f"Etc/GMT{sign}{n}" for sign in "+-" for n in range(1, 12)] + ["UTC"])
KINDS = st.sampled_from(["cart_rescue", "high_intent", "vip_upgrade", "campaign"])
INSTANTS = st.integers(min_value=NIGHT_MS - 30 * 86_400_000, max_value=NIGHT_MS + 30 * 86_400_000)
AGES = st.integers(min_value=0, max_value=10 * 86_400_000)


def in_quiet_hours(now_ms: int, tz: str) -> bool:
    return quiet_until(now_ms, zone(tz, "UTC"), time(21), time(8)) is not None


@given(KINDS, INSTANTS, AGES, ZONES)
def test_nothing_goes_out_stale_or_in_quiet_hours(
    kind: str, now_ms: int, age: int, tz: str
) -> None:
    verdict = policy.at_send_time(SEND_RULES, kind, now_ms - age, now_ms, tz)
    if isinstance(verdict, policy.Go):
        assert age <= SEND_RULES.max_age_ms[kind] and not in_quiet_hours(now_ms, tz)
    elif isinstance(verdict, policy.Wait):
        assert in_quiet_hours(now_ms, tz)
        assert now_ms < verdict.wake_ms <= verdict.until_ms
    else:
        assert verdict.reason == "stale" and age > SEND_RULES.max_age_ms[kind]


@given(KINDS, INSTANTS, AGES, ZONES)
def test_a_hold_ends_at_its_wake_up(kind: str, now_ms: int, age: int, tz: str) -> None:
    """Looked at again at its wake-up time, a held message goes or expires: it is never
    held again, so a hold cannot last beyond quiet hours, its maximum hold or its age."""
    verdict = policy.at_send_time(SEND_RULES, kind, now_ms - age, now_ms, tz)
    if isinstance(verdict, policy.Wait):
        again = policy.at_send_time(SEND_RULES, kind, now_ms - age, verdict.wake_ms, tz, now_ms)
        assert not isinstance(again, policy.Wait)


@given(KINDS, INSTANTS, AGES, ZONES)
def test_forced_sends_always_pass_the_gate(kind: str, now_ms: int, age: int, tz: str) -> None:
    assert policy.at_send_time(SEND_RULES, kind, now_ms - age, now_ms, tz, forced=True) == (
        policy.GO
    )


def test_a_record_from_before_these_fields_still_loads() -> None:
    from pipeline.dispatch.records import record_from_bytes

    old = (
        b'{"t":"m","message_id":"m1","kind":"campaign","user_key":"u1",'
        b'"subjects":["u1"],"created_ms":1}'
    )
    record = record_from_bytes(old)
    assert isinstance(record, MessageRecord) and record.triggered_ms is None
