"""Decaying intent scores: add a signal at an event time, read a score, explain it.

A score keeps one integer (milli-points) per signal code, all valued at the
score's anchor time ``t``: the value at time ``x`` is ``parts * 2^-(x-t)/half_life``.
Adding a signal scales only the new amount (one ``exp``), never the stored
parts, until the anchor is more than a few half-lives old and is moved up.
Integers keep the state's byte form exact and small. A score never exceeds
the cap: the parts are scaled down together, so explanations stay proportional.
"""

from math import exp, log

from pipeline.domain.signals import SIGNAL_NAMES
from pipeline.domain.state import Intent

Signals = tuple[tuple[str, float], ...]

# Move the anchor up once it is this many half-lives old (rate x age, in e-folds),
# which bounds stored parts to 2^4 times the cap.
REANCHOR = 4 * log(2)


def _reanchor(score: Intent, ts: int, rate: float) -> None:
    factor = exp(-rate * (ts - score.t))
    parts = score.parts = {c: d for c, v in score.parts.items() if (d := int(v * factor))}
    score.total = sum(parts.values())
    score.t = ts


def limit(score: Intent, cap_now: float) -> None:
    """Scale every part down together so the score is at most the cap (at anchor scale)."""
    total, parts = score.total, score.parts
    for c, v in parts.items():
        parts[c] = int(v * cap_now) // total
    score.total = sum(parts.values())


def bump(score: Intent, code: str, amount: int, ts: int, rate: float, cap: int) -> None:
    """Add ``amount`` milli-points of a signal at ``ts`` (late events add it decayed)."""
    add(score, code, amount, ts, rate, cap)


def add(score: Intent, code: str, amount: int, ts: int, rate: float, cap: int) -> tuple[int, int]:
    """``bump``, returning the score just before and just after, at ``ts``."""
    # Runs up to three times per event (user, product, category): one call, no helpers.
    age = rate * (ts - score.t)
    if age > REANCHOR:
        _reanchor(score, ts, rate)
        growth = 1.0
    else:
        growth = exp(age)
    before = total = score.total
    added = int(amount * growth)
    if added > 0:
        parts = score.parts
        parts[code] = parts.get(code, 0) + added
        total = score.total = total + added
        if total > cap * growth:
            limit(score, cap * growth)
            total = score.total
    return int(before / growth), int(total / growth)


def clear(score: Intent) -> None:
    score.parts = {}
    score.total = 0


def value(score: Intent, at: int, rate: float) -> int:
    """The score at ``at`` in milli-points."""
    return int(score.total * exp(-rate * (at - score.t)))


def top_signals(score: Intent, n: int, at: int, rate: float) -> Signals:
    """The ``n`` largest contributions at ``at`` as (signal name, points), largest first."""
    factor = exp(-rate * (at - score.t))
    ranked = sorted(score.parts.items(), key=lambda item: (-item[1], item[0]))[:n]
    return tuple((SIGNAL_NAMES.get(code, code), round(v * factor / 1000, 3)) for code, v in ranked)


def weakest(scores: dict[str, Intent], at: int, rate: float) -> str:
    """The key whose score is lowest at ``at`` (first one on ties): the one to evict."""
    return min(scores, key=lambda key: value(scores[key], at, rate))


def merge_into(target: Intent, other: Intent, rate: float, cap: int) -> None:
    """Add ``other``'s contributions into ``target`` (``other`` is left as it was)."""
    anchor = max(target.t, other.t)
    if target.t < anchor:
        _reanchor(target, anchor, rate)
    factor = exp(-rate * (anchor - other.t))
    parts = target.parts
    for code, v in other.parts.items():
        if d := int(v * factor):
            parts[code] = parts.get(code, 0) + d
    target.total = sum(parts.values())
    if target.total > cap:
        limit(target, cap)
