"""A nudge kind's (or a campaign's) outcomes in plain words, from the metrics' own figures.

Pure: the figures come in (api/queries/summaries.py gathers them from the same query
functions as ``/v1/metrics/*``), sentences come out. The uncertainty is stated as it
is: an uplift whose 95 % interval contains zero is said to be not distinguishable
from zero, and a holdout too small to compare against is named instead of an uplift.
Where messages were aimed at each shopper's learned best hour, the summary also sets
their read rate beside the random-hour control's, stated the same way.
"""

from dataclasses import asdict, dataclass
from typing import Any

# Fewer holdout shoppers than this and its conversion rate's interval is so wide
# (Wilson, ±10 pt or more around 10 %) that no uplift is worth stating.
MIN_HOLDOUT_USERS = 30
NOT_DISTINGUISHABLE = "not distinguishable from zero"
# The kinds with a holdout to compare against (VIP upgrades and campaigns have none).
SUMMARY_KINDS = ("cart_rescue", "high_intent")


@dataclass(frozen=True, slots=True)
class SendTimeFigures:
    """Send-time optimisation's two arms (pipeline/campaigns/best_hour.py): messages aimed
    at the shopper's learned best hour and the random-hour control, each with how many
    were read (or clicked), and the difference of the rates with its 95 % interval."""

    best_hour_messages: int
    best_hour_read: int
    random_hour_messages: int
    random_hour_read: int
    difference: float
    difference_low: float
    difference_high: float


@dataclass(frozen=True, slots=True)
class NudgeFigures:
    """A kind's figures over one range, as the metrics API reports them."""

    kind: str
    sent: int  # /v1/metrics/nudges, the kind's 'all' row: each message once
    read: int
    fallback: int  # messages whose delivery fell back to SMS
    nudged_users: int  # /v1/metrics/uplift?kind=: the nudged and holdout groups
    nudged_converted: int
    holdout_users: int
    holdout_converted: int
    uplift: float  # nudged rate − holdout rate, with its 95 % interval
    uplift_low: float
    uplift_high: float
    # Set when the messages were sent at learned best hours (with a random-hour control).
    send_time: SendTimeFigures | None = None


def share(part: int, whole: int) -> float:
    """part / whole within 0..1 (receipts of one range may outnumber its sends)."""
    return min(1.0, max(0.0, part / whole)) if whole > 0 else 0.0


def stated(figures: NudgeFigures) -> dict[str, Any]:
    """Every number the summary states: the figures and the shares made of them."""
    return {
        **asdict(figures),
        "read_share": share(figures.read, figures.sent),
        "fallback_share": share(figures.fallback, figures.sent),
        "nudged_rate": share(figures.nudged_converted, figures.nudged_users),
        "holdout_rate": share(figures.holdout_converted, figures.holdout_users),
        "holdout_too_small": figures.holdout_users < MIN_HOLDOUT_USERS,
        "uplift_distinguishable": not figures.uplift_low <= 0 <= figures.uplift_high,
        **_send_time_stated(figures.send_time),
    }


def _send_time_stated(arms: SendTimeFigures | None) -> dict[str, Any]:
    if arms is None:
        return {"send_time": None}
    return {
        "send_time": {
            **asdict(arms),
            "best_hour_read_share": share(arms.best_hour_read, arms.best_hour_messages),
            "random_hour_read_share": share(arms.random_hour_read, arms.random_hour_messages),
            "random_hour_too_small": arms.random_hour_messages < MIN_HOLDOUT_USERS,
            "distinguishable": not arms.difference_low <= 0 <= arms.difference_high,
        }
    }


def count(n: int) -> str:
    return f"{n:,}"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def points(fraction: float) -> str:
    return f"{100 * fraction:+.1f}"


def summary_text(figures: NudgeFigures, subject: str | None = None) -> str:
    """E.g. "12,480 sent, 61.0 % read; SMS fallback carried 18.0 %; conversions 3.1 % vs
    2.2 % in the holdout, uplift +0.9 pt [+0.4, +1.4]", after ``subject`` (by default
    the kind, e.g. "Cart rescue")."""
    s = stated(figures)
    parts = []
    if figures.sent:
        parts.append(f"{count(figures.sent)} sent, {percent(s['read_share'])} read")
        parts.append(f"SMS fallback carried {percent(s['fallback_share'])}")
    else:
        parts.append("nothing sent")
    if not figures.nudged_users:
        parts.append("no shopper nudged, so no conversions to compare")
    elif s["holdout_too_small"]:
        parts.append(
            f"conversions {percent(s['nudged_rate'])} of {count(figures.nudged_users)} nudged "
            f"shoppers; the holdout ({count(figures.holdout_users)} shoppers) is too small "
            "to estimate an uplift"
        )
    else:
        uplift = (
            f"uplift {points(figures.uplift)} pt "
            f"[{points(figures.uplift_low)}, {points(figures.uplift_high)}]"
        )
        if not s["uplift_distinguishable"]:
            uplift += f", {NOT_DISTINGUISHABLE}"
        parts.append(
            f"conversions {percent(s['nudged_rate'])} vs {percent(s['holdout_rate'])} "
            f"in the holdout, {uplift}"
        )
    if figures.send_time is not None:
        parts.append(_send_time_text(figures.send_time, s["send_time"]))
    text = "; ".join(parts)
    subject = subject or figures.kind.replace("_", " ").capitalize()
    return f"{subject}: {text}."


def _send_time_text(arms: SendTimeFigures, stated_arms: dict[str, Any]) -> str:
    """E.g. "read 59.3 % at the learned best hour vs 16.7 % at random hours, +42.7 pt
    [+33.8, +49.8]"; a control too small to compare against is named instead."""
    best = f"read {percent(stated_arms['best_hour_read_share'])} at the learned best hour"
    if stated_arms["random_hour_too_small"]:
        return (
            f"{best}; the random-hour control ({count(arms.random_hour_messages)} messages)"
            " is too small to compare against"
        )
    difference = (
        f"{points(arms.difference)} pt "
        f"[{points(arms.difference_low)}, {points(arms.difference_high)}]"
    )
    if not stated_arms["distinguishable"]:
        difference += f", {NOT_DISTINGUISHABLE}"
    control = percent(stated_arms["random_hour_read_share"])
    return f"{best} vs {control} at random hours, {difference}"
