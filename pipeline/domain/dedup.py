"""Dropping events already folded, in bounded memory per user.

A user remembers the ids of their last ``max_ids`` events. An event is
dropped when its id is remembered, or when it is at or before the horizon:
more than ``window_s`` behind the user's latest event, or no newer than an id
already forgotten — it could be a duplicate we can no longer recognise. So
re-feeding any event changes nothing, at the price of ignoring events that
arrive that late (the warehouse still records them).

Orders, consent and identify are never dropped for lateness: they matter
whatever their delay, and folding them twice is harmless (orders are also
deduplicated by order id; consent keeps the newest decision per channel).
"""

from pipeline.domain.rules import Plan
from pipeline.domain.state import UserState

LATE_BUT_KEPT = frozenset({"order_placed", "consent", "identify"})


def admit(state: UserState, key: int, ts: int, name: str, plan: Plan) -> bool:
    """Remember the event and say whether to fold it; advances ``state.last_ms``."""
    seen = state.seen
    if key in seen:
        return False
    horizon = state.horizon_ms
    if ts <= horizon and name not in LATE_BUT_KEPT:
        return False
    last = state.last_ms
    if ts > last:
        last = state.last_ms = ts
    floor = last - plan.dedup_window_ms
    if floor > horizon:
        horizon = state.horizon_ms = floor
    if ts > horizon:
        seen[key] = ts
        if len(seen) > plan.dedup_max_ids:
            # Forget the id remembered longest; nothing at or before its time is folded again.
            forgotten = seen.pop(next(iter(seen)))
            if forgotten > horizon:
                state.horizon_ms = forgotten
    return True
