"""High intent: a product's score crossing the threshold triggers one discount nudge.

Hysteresis: after firing, a product re-arms only once its score (decayed,
read just before a new signal) falls below threshold x (1 - hysteresis).
Cooldowns: per product, and between any two high_intent nudges of a user.
Trigger: product id + the event that crossed, so the nudge id is stable.

A nudge published to be sent may still wait at the dispatcher (for the shopper's best
hour, quiet hours or a paused channel) up to the kind's maximum age. Buying its product
meanwhile withdraws it (a ``NudgeCancellation``), as an order withdraws a cart rescue:
a discount on what the shopper just bought is the wrong message.
"""

from pipeline.domain import suppression
from pipeline.domain.clock import to_datetime
from pipeline.domain.ids import nudge_id
from pipeline.domain.rules import Plan
from pipeline.domain.scoring import top_signals
from pipeline.domain.state import NO_TIME, ProductIntent, Sent, UserState
from schemas.messages import Nudge, NudgeCancellation


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
    settled = suppression.settle(state, nudge, ts, plan)
    note_published(state, settled, ts, plan)
    out.append(settled)


def note_published(state: UserState, decision: object, ts: int, plan: Plan) -> None:
    """Remember a high-intent nudge published to be sent (until its maximum age), so an
    order of its product can withdraw it."""
    state.hi_sent = [x for x in state.hi_sent if ts - x.emitted_ms <= plan.hi_max_age_ms]
    if (
        isinstance(decision, Nudge)
        and decision.kind == "high_intent"
        and decision.status == "emit"
        and decision.product_id is not None
    ):
        state.hi_sent.append(Sent(decision.product_id, decision.nudge_id, decision.user_key, ts))


def withdraw_sent(
    state: UserState, products: set[str], ts: int, trigger: str, plan: Plan, out: list
) -> None:
    """Products just bought: withdraw their high-intent nudges the dispatcher may still
    hold (sent ones are past withdrawing; the dispatcher ignores those)."""
    kept = []
    for sent in state.hi_sent:
        if ts - sent.emitted_ms > plan.hi_max_age_ms:
            continue  # expired at the dispatcher by now
        if sent.product not in products:
            kept.append(sent)
            continue
        out.append(
            NudgeCancellation(
                nudge_id=sent.nudge_id,
                kind="high_intent",
                user_key=sent.user_key,
                reason="order_placed",
                at=to_datetime(ts),
                rules_version=plan.version,
                trigger_event_id=trigger,
            )
        )
    state.hi_sent = kept


def withdraw_held(state: UserState, products: set[str], ts: int, out: list) -> None:
    """Products just bought: their held high_intent nudges are pointless now."""
    for held in [h for h in state.held if h.nudge.product_id in products]:
        state.held.remove(held)
        out.append(suppression.withdraw(held, "order_placed", ts))
