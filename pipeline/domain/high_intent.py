"""High intent: a product's score crossing the threshold triggers one discount nudge.

Hysteresis: after firing, a product re-arms only once its score (decayed,
read just before a new signal) falls below threshold x (1 - hysteresis).
Cooldowns: per product, and between any two high_intent nudges of a user.
Trigger: product id + the event that crossed, so the nudge id is stable.
"""

from pipeline.domain import suppression
from pipeline.domain.clock import to_datetime
from pipeline.domain.ids import nudge_id
from pipeline.domain.rules import Plan
from pipeline.domain.scoring import top_signals
from pipeline.domain.state import NO_TIME, ProductIntent, UserState
from schemas.messages import Nudge


def check(
    state: UserState,
    product: str,
    score: ProductIntent,
    before: int,
    after: int,
    ts: int,
    event_id: str,
    plan: Plan,
    out: list,
) -> None:
    """Called after a signal moved ``product``'s score from ``before`` to ``after`` at ``ts``."""
    if not score.armed:
        if before >= plan.hi_rearm:
            return
        score.armed = True
    if after < plan.hi_threshold:
        return
    if score.fired_ms != NO_TIME and ts - score.fired_ms < plan.hi_cooldown_ms:
        return
    if state.hi_ms != NO_TIME and ts - state.hi_ms < plan.hi_user_cooldown_ms:
        return
    if plan.hi_skip_in_cart and state.cart is not None and product in state.cart.items:
        return
    score.armed = False
    score.crossings += 1
    score.fired_ms = state.hi_ms = ts
    when = to_datetime(ts)
    nudge = Nudge(
        nudge_id=nudge_id(state.key, "high_intent", f"{product}\x1f{event_id}", plan.version),
        kind="high_intent",
        user_key=state.key,
        user_id=state.user_id,
        anonymous_id=state.anonymous_id,
        status="emit",
        triggered_at=when,
        decided_at=when,
        product_id=product,
        discount_percent=plan.hi_discount,
        score=round(after / 1000, 3),
        signals=top_signals(score, plan.top_signals, ts, plan.decay_product),
        rules_version=plan.version,
        trigger_event_id=event_id,
    )
    out.append(suppression.settle(state, nudge, ts, plan))


def withdraw_held(state: UserState, products: set[str], ts: int, out: list) -> None:
    """Products just bought: their held high_intent nudges are pointless now."""
    for held in [h for h in state.held if h.nudge.product_id in products]:
        state.held.remove(held)
        out.append(suppression.withdraw(held, "order_placed", ts))
