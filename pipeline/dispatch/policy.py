"""Which channel a message goes out on next, or why it waits or stops. Pure.

The channels in the order the rules' channel plan gives the shopper's country
(WhatsApp first, SMS as the fallback, unless the plan says otherwise): a channel is
usable when the user has consented to it and a phone is known, and it is not paused.
The caller says which channels were already tried (and why the last one did not do).

``at_send_time`` is the send-time gate before a message's first channel: too old
(per-kind maximum age, ``dispatch.max_age_s`` in the rules) → expired; in quiet
hours in the shopper's zone → held until they end, expired once held longer than
``suppression.quiet_hours.max_hold_s``. Admin force-sends skip both (an operator
asked for this message now); they never skip consent.

``aim`` is where a high-intent nudge whose rule sends at the best hour is aimed: its arm
(the random-hour control by a stable hash of the shopper, else the best hour learned in
the snapshot in force at its decision time) and the next start of that local hour from
the decision time, when it comes within ``max_delay_s``; ``at_send_time`` then holds it
until that instant, before quiet hours, which still win. Cart rescues are never aimed.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Literal

from pipeline.campaigns.best_hour import in_control, next_at_hour, random_hour
from pipeline.dispatch.send_hours import HourSnapshot, learned_hour
from pipeline.domain.clock import quiet_until, to_datetime, to_ms, zone
from pipeline.domain.rules import Rules, SendTime
from schemas.messages import EXPIRED_MAX_HOLD, EXPIRED_STALE

CHANNEL_ORDER = ("whatsapp", "sms")
NOT_IN_PLAN = "not_in_country_plan"


@dataclass(frozen=True, slots=True)
class Reach:
    """What may be used for one user right now."""

    consented: frozenset[str]  # consent granted and a phone known
    paused: frozenset[str]
    # The channel plan for the shopper's country, in order (rules: dispatch.channel_plan).
    order: tuple[str, ...] = CHANNEL_ORDER


@dataclass(frozen=True, slots=True)
class Send:
    channel: str
    # Set when this is not the first choice: the channel given up and why.
    fallback_from: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str = "channels_paused"


@dataclass(frozen=True, slots=True)
class Stop:
    # suppressed: nothing was ever sent; exhausted: sent before, no fallback left.
    status: str
    reason: str


Step = Send | Hold | Stop


def _skip_reason(channel: str, reach: Reach) -> str:
    if channel not in reach.consented:
        return f"no_{channel}_consent"
    return f"{channel}_paused"


def next_step(reach: Reach, tried: tuple[str, ...] = (), why: str | None = None) -> Step:
    """The next step for a message; ``why`` is why the last tried channel gave up."""
    candidates = [c for c in reach.order if c not in tried]
    for channel in candidates:
        if channel in reach.consented and channel not in reach.paused:
            if tried:
                return Send(channel, tried[-1], why)
            first = reach.order[0]
            if channel != first:
                return Send(channel, first, _skip_reason(first, reach))
            return Send(channel)
    if any(c in reach.consented for c in candidates):
        return Hold()
    if tried:
        return Stop("exhausted", why or "no_fallback")
    if reach.consented:  # consented only where the country's plan does not send
        return Stop("suppressed", NOT_IN_PLAN)
    return Stop("suppressed", "no_consent")


def channel_order(rules: Rules, calling_code: str | None) -> tuple[str, ...]:
    """The channel plan for a country (its E.164 calling code), or the default plan."""
    plan = rules.dispatch.channel_plan
    if calling_code is None:
        return plan.default
    return plan.by_calling_code.get(calling_code, plan.default)


def cap_reached(sent_today: int, cap: int, forced: bool) -> bool:
    return not forced and sent_today >= cap


# --- send time ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRules:
    """The rules' send-time checks in milliseconds."""

    max_age_ms: Mapping[str, int]  # message kind -> maximum age of its trigger
    quiet_start: time | None
    quiet_end: time | None
    max_hold_ms: int
    default_timezone: str
    # message kind -> its best-hour setting, for the kinds whose rule enables it (only
    # high_intent can: cart rescues are time-critical and have no such setting).
    best_hour: Mapping[str, SendTime] = field(default_factory=dict)

    @classmethod
    def of(cls, rules: Rules) -> "SendRules":
        plan = rules.plan
        ages = rules.dispatch.max_age_s.model_dump()
        return cls(
            max_age_ms={kind: seconds * 1000 for kind, seconds in ages.items()},
            quiet_start=plan.quiet_start,
            quiet_end=plan.quiet_end,
            max_hold_ms=plan.max_hold_ms,
            default_timezone=plan.default_timezone,
            best_hour={
                kind: setting
                for kind, setting in {"high_intent": rules.high_intent.send_time}.items()
                if setting.mode == "best_hour"
            },
        )


@dataclass(frozen=True, slots=True)
class Go:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    """Held for quiet hours (they end at ``until_ms``) or for the best hour (``reason``
    ``send_time``: it starts at ``until_ms``); look again at ``wake_ms`` (the end, or
    earlier when the message goes stale or reaches its maximum hold first)."""

    until_ms: int
    wake_ms: int
    reason: Literal["quiet_hours", "send_time"] = "quiet_hours"


@dataclass(frozen=True, slots=True)
class Expire:
    reason: str  # one of schemas.messages.EXPIRY_REASONS


GO = Go()
Verdict = Go | Wait | Expire


def at_send_time(
    rules: SendRules,
    kind: str,
    triggered_ms: int,
    now_ms: int,
    timezone: str | None,
    held_since_ms: int | None = None,
    forced: bool = False,
    quiet_hours: bool = True,
    aimed_ms: int | None = None,
) -> Verdict:
    """May a message of ``kind`` triggered at ``triggered_ms`` go out at ``now_ms``?

    ``held_since_ms``: when its quiet-hours hold began (None if never held).
    ``quiet_hours=False`` for messages whose quiet hours were applied upstream.
    ``aimed_ms``: the instant ``aim`` chose (None: as decided); held until then, and
    quiet hours are kept from there.
    """
    if forced:
        return GO
    max_age = rules.max_age_ms.get(kind)
    stale_after = None if max_age is None else triggered_ms + max_age
    if stale_after is not None and now_ms > stale_after:
        return Expire(EXPIRED_STALE)
    if aimed_ms is not None and now_ms < aimed_ms:
        wake = aimed_ms if stale_after is None else min(aimed_ms, stale_after + 1)
        return Wait(aimed_ms, wake, "send_time")
    if not quiet_hours or rules.quiet_start is None or rules.quiet_end is None:
        return GO
    tz = zone(timezone, rules.default_timezone)
    until = quiet_until(now_ms, tz, rules.quiet_start, rules.quiet_end)
    if until is None:
        return GO
    hold_ends = (now_ms if held_since_ms is None else held_since_ms) + rules.max_hold_ms
    if now_ms >= hold_ends:
        return Expire(EXPIRED_MAX_HOLD)
    wake = min(until, hold_ends)
    if stale_after is not None:
        wake = min(wake, stale_after + 1)
    return Wait(until, wake)


# --- the best hour -------------------------------------------------------------------

SendArm = Literal["best_hour", "random_hour"]


@dataclass(frozen=True, slots=True)
class Aim:
    """A nudge in the send-time experiment: its arm, the local hour it is held for (None:
    sent as decided: nothing learned, or the hour comes later than ``max_delay_s``) and
    the instant it may go (the start of that hour, else the decision time)."""

    arm: SendArm
    hour: int | None
    at_ms: int


def aim(
    rules: SendRules,
    kind: str,
    nudge_id: str,
    user_key: str,
    decided_ms: int,
    timezone: str | None,
    snapshots: Sequence[HourSnapshot],
    forced: bool = False,
) -> Aim | None:
    """Where a nudge is aimed; None outside the experiment (its kind's rule sends as
    decided, a cart rescue, an admin force-send). A function of the decision and the
    recorded snapshots only: a replay, or a dispatcher catching up, aims it the same."""
    setting = rules.best_hour.get(kind)
    if setting is None or forced:
        return None
    arm: SendArm
    if in_control(kind, user_key, setting.control_share):
        # The control: a shopper stays in it for every nudge; a random hour per nudge.
        arm, hour = "random_hour", random_hour(nudge_id, user_key)
    else:
        arm, hour = "best_hour", learned_hour(snapshots, user_key, decided_ms)
    if hour is None:
        return Aim(arm, None, decided_ms)
    tz = zone(timezone, rules.default_timezone)
    aimed = to_ms(next_at_hour(to_datetime(decided_ms), hour, tz))
    if aimed - decided_ms > setting.max_delay_s * 1000:
        return Aim(arm, None, decided_ms)
    return Aim(arm, hour, aimed)
