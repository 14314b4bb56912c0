"""Whether a triggered nudge is sent, held for quiet hours, or recorded as suppressed.

Checks run in this order, each on the shopper's local calendar:
1. consent: no deliverable channel with marketing consent -> suppressed(no_consent)
   (nudges and VIP upgrades are offers: consent to order updates is not enough);
2. quiet hours: held in the state until they end (``release``), or
   suppressed(quiet_hours_stale) if that is longer than the maximum hold; the hold
   itself is published at once as a ``NudgeHeld`` (recorded, never sent);
3. frequency cap per local day, all nudge kinds -> suppressed(frequency_cap);
4. holdout -> suppressed(holdout).
The holdout comes last and counts against the cap, so the control group is
exactly "would have been sent": uplift compares like with like.
"""

from pipeline.domain.clock import local_day, quiet_until, to_datetime, zone
from pipeline.domain.ids import in_holdout
from pipeline.domain.rules import Plan
from pipeline.domain.state import HAS_PHONE, PURPOSE_SLOTS, Held, UserState, consent_entry
from schemas.messages import Nudge, NudgeHeld

# Preference order the dispatcher tries (WhatsApp, then SMS, then email).
CHANNELS = ("whatsapp", "sms", "email")
_NEEDS_PHONE = frozenset({"whatsapp", "sms"})


def allowed_channels(state: UserState, purpose: str = "marketing") -> tuple[str, ...]:
    """Channels consented for ``purpose`` that can be delivered: whatsapp and sms need
    a known phone. Every message the engine decides (nudges, VIP upgrades) is marketing."""
    bit = PURPOSE_SLOTS[purpose][0]
    allowed = []
    for channel in CHANNELS:
        flags = consent_entry(state, channel)[0]
        if flags & bit and (channel not in _NEEDS_PHONE or flags & HAS_PHONE):
            allowed.append(channel)
    return tuple(allowed)


def settle(state: UserState, nudge: Nudge, at_ms: int, plan: Plan) -> Nudge | NudgeHeld:
    """The published form of a nudge triggered at ``at_ms``, or, when it is held, the
    record of the hold (the nudge itself is published when the hold ends)."""
    nudge = nudge.model_copy(update={"timezone": state.timezone})
    channels = allowed_channels(state)
    if not channels:
        return _final(nudge, "no_consent", at_ms, channels)
    if plan.quiet_start is not None and plan.quiet_end is not None:
        tz = zone(state.timezone, plan.default_timezone)
        release = quiet_until(at_ms, tz, plan.quiet_start, plan.quiet_end)
        if release is not None:
            deadline = min(release, at_ms + plan.max_hold_ms)
            state.held.append(Held(deadline, release, nudge))
            return NudgeHeld(
                nudge_id=nudge.nudge_id,
                kind=nudge.kind,
                user_key=nudge.user_key,
                held_at=to_datetime(at_ms),
                release_at=to_datetime(deadline),
                rules_version=nudge.rules_version,
                trigger_event_id=nudge.trigger_event_id,
            )
    return _cap_and_holdout(state, nudge, at_ms, channels, plan)


def release(state: UserState, held: Held, plan: Plan) -> Nudge:
    """The published form of a held nudge at its deadline (the caller removes it)."""
    if held.release_ms > held.deadline_ms:
        return _final(held.nudge, "quiet_hours_stale", held.deadline_ms, ())
    channels = allowed_channels(state)
    if not channels:
        return _final(held.nudge, "no_consent", held.release_ms, channels)
    return _cap_and_holdout(state, held.nudge, held.release_ms, channels, plan)


def withdraw(held: Held, reason: str, at_ms: int) -> Nudge:
    """A held nudge whose purpose went away (order placed, cart emptied) before release."""
    return _final(held.nudge, reason, at_ms, ())


def _cap_and_holdout(
    state: UserState, nudge: Nudge, at_ms: int, channels: tuple[str, ...], plan: Plan
) -> Nudge:
    day = local_day(at_ms, zone(state.timezone, plan.default_timezone))
    if day > state.cap_day:
        state.cap_day, state.cap_count = day, 0
    if state.cap_count >= plan.cap_per_day:
        return _final(nudge, "frequency_cap", at_ms, channels)
    state.cap_count += 1
    if in_holdout(state.key, plan.salt, plan.holdout_share):
        return _final(nudge, "holdout", at_ms, channels)
    return _final(nudge, None, at_ms, channels)


def _final(nudge: Nudge, reason: str | None, at_ms: int, channels: tuple[str, ...]) -> Nudge:
    # The nudge was validated when triggered; these updates keep it valid.
    return nudge.model_copy(
        update={
            "status": "suppressed" if reason else "emit",
            "reason": reason,
            "decided_at": to_datetime(at_ms),
            "channels": channels,
        }
    )
