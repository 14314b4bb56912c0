"""Send-time optimisation: each member's best local hour, learned from their reads and
clicks, and when their campaign message goes out. Pure: times are arguments.

The learner is a Dirichlet-smoothed hourly histogram: the posterior count of hour h is
``prior_weight × population share of h + the member's own reads and clicks at h``; the
best hour is the argmax, ties to the earliest hour. A member with no history gets the
population's best hour; one with enough history at one hour gets that hour.

A deterministic share of a best-hour campaign's members (a hash of campaign and member)
is the control: sent at a uniformly random hour instead, so the effect is measured, not
guessed (the campaign report compares the two arms' read rates with an interval).

Scheduling only picks the instant a member's message is aimed at; the launcher's
``send_after`` then keeps the campaign's quiet hours from there, and the dispatcher
its caps and consent, as for any campaign message.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from hashlib import blake2b
from zoneinfo import ZoneInfo

from schemas.campaigns import SendArm

HOURS = 24
# Pseudo-counts the population's distribution is worth against a member's own.
PRIOR_WEIGHT = 4.0
# The share of a best-hour campaign's targets sent at a random hour (the control).
CONTROL_SHARE = 0.2
# Reads and clicks older than this are not history.
LOOKBACK = timedelta(days=90)
# A campaign message expires 24 h after launch (dispatch.max_age_s.campaign): its aimed
# time, quiet hours included, must fall within this much of the launch, else it goes
# out as created.
WINDOW = timedelta(hours=23)


def hour_counts(local_hours: Iterable[int]) -> list[int]:
    """A histogram of local hours (0-23)."""
    counts = [0] * HOURS
    for hour in local_hours:
        counts[hour % HOURS] += 1
    return counts


def pooled(histograms: Iterable[Sequence[int]]) -> list[int]:
    """The population's histogram: the members' own, summed hour by hour."""
    total = hour_counts(())
    for histogram in histograms:
        total = [a + b for a, b in zip(total, histogram, strict=True)]
    return total


def local_hour(moment: datetime, tz: ZoneInfo) -> int:
    return moment.astimezone(tz).hour


def best_hour(
    own: Sequence[int], population: Sequence[int], prior_weight: float = PRIOR_WEIGHT
) -> int | None:
    """The argmax of ``prior_weight × population share + own counts``, ties to the
    earliest hour; None when neither the member nor the population has any history."""
    total = sum(population)
    if not total and not any(own):
        return None
    prior = [prior_weight * n / total for n in population] if total else [0.0] * HOURS
    posterior = [p + n for p, n in zip(prior, own, strict=True)]
    return max(range(HOURS), key=lambda h: (posterior[h], -h))


def _draw(scope: str, user_key: str, purpose: str) -> int:
    digest = blake2b(f"{purpose}\x1f{scope}\x1f{user_key}".encode(), digest_size=8)
    return int.from_bytes(digest.digest())


def in_control(scope: str, user_key: str, share: float = CONTROL_SHARE) -> bool:
    """The same member is in the random-hour arm on every attempt. ``scope``: the
    campaign's id, or the nudge kind (a shopper stays in one arm for all its nudges)."""
    return _draw(scope, user_key, "send-time-control") / 2**64 < share


def random_hour(scope: str, user_key: str) -> int:
    """A uniformly random local hour, the same on every attempt (``scope``: the campaign's
    id, or the nudge's id: a random hour per nudge)."""
    return _draw(scope, user_key, "send-time-hour") % HOURS


def arm_and_hour(
    campaign_id: str, user_key: str, own: Sequence[int], population: Sequence[int]
) -> tuple[SendArm, int | None]:
    """The member's arm and the local hour it aims at (None: nothing learned yet, so
    the best-hour arm sends as created)."""
    if in_control(campaign_id, user_key):
        return "random_hour", random_hour(campaign_id, user_key)
    return "best_hour", best_hour(own, population)


def next_at_hour(now: datetime, hour: int, tz: ZoneInfo) -> datetime:
    """``now`` when it is ``hour`` o'clock in ``tz``, else the next start of that local
    hour (at most 23 hours ahead, give or take a daylight-saving change)."""
    local = now.astimezone(tz)
    if local.hour == hour:
        return now
    start = local.replace(minute=0, second=0, microsecond=0)
    ahead = (hour - local.hour) % HOURS
    # Wall-clock arithmetic in the zone, then back to the instant it names.
    aimed = (start.replace(tzinfo=None) + timedelta(hours=ahead)).replace(tzinfo=tz)
    return max(now, aimed.astimezone(now.tzinfo))
