"""Is intent measured, not asserted: how well scores and the high-intent trigger predict
a purchase within a horizon H. Pure: points, orders and triggers in, a report out; the
traffic's start and end are arguments (time is data).

**One example** is a *decision point*: one of a shopper's own events (never a server
event such as an order or a price drop) at the shopper's event time ``t`` right after
the engine folded it, with the shopper's intent score at ``t``. The score only knows
events at or before ``t``: ``t`` is the shopper's latest event time, so a late event
is a decision point at the shopper's clock, not before events already folded. Its
**label**: the same shopper (anonymous id and user id joined) places an order in
``(t, t + H]`` — strictly after the point, so the order that ends a visit never labels
itself. Points whose horizon runs past the end of the traffic are left out: their label
is unknown, and counting them as negatives would punish late scores.

- **AUC** of the score: the probability that a random positive point scores above a
  random negative one, ties counting half (the Mann–Whitney statistic). ``None``
  without both classes. A heavy shopper contributes more points: the AUC is per
  moment of shopping, which is when the engine decides.
- **Base rate**: the share of points that are positive.
- **The trigger** (a ``high_intent`` nudge decided, whatever then became of it: sent,
  held, suppressed or in the holdout — the rule fired, which is what is judged):
  *precision* is the share of triggers (with their horizon inside the traffic)
  followed by an order of the shopper in ``(τ, τ + H]``; *recall* the share of orders
  (at least H after the traffic's start) with a trigger of the shopper in the H before
  them, ``[o - H, o)``; *lift* is precision / base rate: how much likelier an order is
  after a trigger than after an arbitrary moment of shopping.
"""

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict


class Point(NamedTuple):
    """A decision point: a shopper, the moment (epoch ms), the score then."""

    person: str
    at_ms: int
    score: float


class Moment(NamedTuple):
    """An order or a trigger: whose, and when (epoch ms)."""

    person: str
    at_ms: int


class IntentReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    rules_version: str
    horizon_s: int
    start_ms: int
    end_ms: int
    # Decision points with their whole horizon inside the traffic, their shoppers,
    # and how many of the points are followed by an order within the horizon.
    examples: int
    users: int
    positives: int
    base_rate: float | None
    auc: float | None
    triggers: int
    triggers_followed: int
    precision: float | None
    orders: int
    orders_preceded: int
    recall: float | None
    lift: float | None


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann–Whitney: ties count half); None without both classes."""
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    ranked = sorted(zip(scores, labels, strict=True), key=lambda pair: pair[0])
    rank_sum = 0.0
    i, n = 0, len(ranked)
    while i < n:
        j = i
        while j < n and ranked[j][0] == ranked[i][0]:
            j += 1
        tied_positives = sum(1 for k in range(i, j) if ranked[k][1])
        # Ranks i+1 … j share their mean.
        rank_sum += tied_positives * (i + 1 + j) / 2
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _by_person(moments: Iterable[Moment]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for person, at_ms in moments:
        out[person].append(at_ms)
    for times in out.values():
        times.sort()
    return out


def _any_in(times: list[int], after: int, until: int) -> bool:
    """Is a time in ``(after, until]``?"""
    i = bisect_right(times, after)
    return i < len(times) and times[i] <= until


def labels_of(
    points: Sequence[Point], orders: Iterable[Moment], horizon_ms: int, end_ms: int
) -> list[bool | None]:
    """Per point: an order of its shopper in ``(t, t + H]``; None when ``t + H`` is past
    the end of the traffic (unknown, so left out)."""
    bought = _by_person(orders)
    empty: list[int] = []
    return [
        _any_in(bought.get(p.person, empty), p.at_ms, p.at_ms + horizon_ms)
        if p.at_ms + horizon_ms <= end_ms
        else None
        for p in points
    ]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def evaluate(
    points: Sequence[Point],
    orders: Sequence[Moment],
    triggers: Sequence[Moment],
    horizon_ms: int,
    start_ms: int,
    end_ms: int,
    rules_version: str,
) -> IntentReport:
    """The report for horizon ``horizon_ms`` over traffic recorded in ``[start_ms, end_ms]``."""
    if horizon_ms <= 0:
        raise ValueError("the horizon must be positive")
    examples = [
        (point, label)
        for point, label in zip(points, labels_of(points, orders, horizon_ms, end_ms), strict=True)
        if label is not None
    ]
    labels = [label for _, label in examples]
    positives = sum(labels)
    base_rate = _share(positives, len(examples))
    bought = _by_person(orders)
    fired = _by_person(triggers)
    empty: list[int] = []
    judged = [t for t in triggers if t.at_ms + horizon_ms <= end_ms]
    followed = sum(
        _any_in(bought.get(t.person, empty), t.at_ms, t.at_ms + horizon_ms) for t in judged
    )
    counted = [o for o in orders if o.at_ms - horizon_ms >= start_ms]
    preceded = 0
    for order in counted:
        times = fired.get(order.person, empty)
        # A trigger in [o - H, o).
        i = bisect_left(times, order.at_ms - horizon_ms)
        preceded += i < len(times) and times[i] < order.at_ms
    precision = _share(followed, len(judged))
    return IntentReport(
        rules_version=rules_version,
        horizon_s=horizon_ms // 1000,
        start_ms=start_ms,
        end_ms=end_ms,
        examples=len(examples),
        users=len({point.person for point, _ in examples}),
        positives=positives,
        base_rate=base_rate,
        auc=auc([point.score for point, _ in examples], labels),
        triggers=len(judged),
        triggers_followed=followed,
        precision=precision,
        orders=len(counted),
        orders_preceded=preceded,
        recall=_share(preceded, len(counted)),
        lift=precision / base_rate if precision is not None and base_rate else None,
    )


def report_lines(report: IntentReport) -> list[str]:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    hours = report.horizon_s / 3600
    return [
        f"rules {report.rules_version}, purchase within {hours:g} h of a decision point",
        f"  examples {report.examples:,} (decision points of {report.users:,} shoppers), "
        f"positives {report.positives:,}, base rate {pct(report.base_rate)}",
        f"  score AUC {num(report.auc)}",
        f"  high-intent trigger: precision {pct(report.precision)} "
        f"({report.triggers_followed:,} of {report.triggers:,} triggers followed by an order), "
        f"recall {pct(report.recall)} ({report.orders_preceded:,} of {report.orders:,} orders "
        f"preceded by a trigger), lift {num(report.lift)}",
    ]
