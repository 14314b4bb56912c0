"""Which channel a message goes out on next, or why it waits or stops. Pure.

WhatsApp first, SMS as the fallback: a channel is usable when the user has
consented to it and a phone is known, and it is not paused. The caller says
which channels were already tried (and why the last one did not do).
"""

from dataclasses import dataclass

CHANNEL_ORDER = ("whatsapp", "sms")


@dataclass(frozen=True, slots=True)
class Reach:
    """What may be used for one user right now."""

    consented: frozenset[str]  # consent granted and a phone known
    paused: frozenset[str]


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
    candidates = [c for c in CHANNEL_ORDER if c not in tried]
    for channel in candidates:
        if channel in reach.consented and channel not in reach.paused:
            if tried:
                return Send(channel, tried[-1], why)
            first = CHANNEL_ORDER[0]
            if channel != first:
                return Send(channel, first, _skip_reason(first, reach))
            return Send(channel)
    if any(c in reach.consented for c in candidates):
        return Hold()
    if tried:
        return Stop("exhausted", why or "no_fallback")
    return Stop("suppressed", "no_consent")


def cap_reached(sent_today: int, cap: int, forced: bool) -> bool:
    return not forced and sent_today >= cap
