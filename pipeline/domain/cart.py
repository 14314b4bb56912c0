"""The cart and its abandonment deadline: one cart_rescue per cart, cancelled when resolved.

Choices (written down for the closing note):
- The deadline is the shopper's last activity (any behavioural event, not only
  cart changes) plus ``timeout_s``: someone still browsing has not abandoned.
- ``checkout_started`` does not cancel: it moves the deadline to
  ``checkout_timeout_s`` after the activity, until the cart changes again.
- ``exit_intent`` with a non-empty cart brings the deadline forward to
  ``exit_intent_grace_s``; later activity pushes it back.
- An order or an emptied cart resolves the cart: an emitted rescue gets a
  ``NudgeCancellation``, a held one is published as suppressed with that reason.
- The cart's id is the event id of the add_to_cart that started it: the
  rescue's trigger, so its nudge id is stable under replay.
"""

from pipeline.domain import suppression
from pipeline.domain.clock import to_datetime
from pipeline.domain.ids import nudge_id
from pipeline.domain.rules import Plan
from pipeline.domain.scoring import top_signals, value
from pipeline.domain.state import NO_TIME, Cart, UserState
from schemas.messages import CartItem, Nudge, NudgeCancellation

Decisions = list


def add_item(
    state: UserState, event_id: str, product: str, qty: int, price: float, ts: int, plan: Plan
) -> None:
    cart = state.cart
    if cart is None:
        cart = state.cart = Cart(event_id, ts)
    item = cart.items.get(product)
    if item is not None:
        item[0] += qty
        item[1] = price
    elif len(cart.items) < plan.cart_max_items:
        cart.items[product] = [qty, price]
    cart.checkout_ms = NO_TIME
    if cart.rescue_id is None:
        cart.deadline_ms = max(cart.deadline_ms or NO_TIME, state.last_ms + plan.cart_timeout_ms)


def remove_item(
    state: UserState, product: str, qty: int, ts: int, plan: Plan, out: Decisions
) -> None:
    cart = state.cart
    if cart is None or product not in cart.items:
        return
    item = cart.items[product]
    item[0] -= qty
    if item[0] <= 0:
        del cart.items[product]
    cart.checkout_ms = NO_TIME
    if not cart.items:
        resolve(state, "cart_emptied", ts, plan, out)


def checkout(state: UserState, ts: int, plan: Plan) -> None:
    cart = state.cart
    if cart is not None:
        cart.checkout_ms = ts
        touch(state, plan)


def touch(state: UserState, plan: Plan) -> None:
    """Activity: the cart is not idle; its deadline moves to the timeout after it."""
    cart = state.cart
    if cart is not None and cart.deadline_ms is not None:
        idle = plan.checkout_timeout_ms if cart.checkout_ms != NO_TIME else plan.cart_timeout_ms
        deadline = state.last_ms + idle
        if deadline > cart.deadline_ms:
            cart.deadline_ms = deadline


def exit_intent(state: UserState, ts: int, plan: Plan) -> None:
    cart = state.cart
    # A late exit intent (activity came after it) says nothing about leaving now.
    if cart is not None and cart.deadline_ms is not None and cart.items and ts >= state.last_ms:
        cart.deadline_ms = min(cart.deadline_ms, ts + plan.exit_grace_ms)


def order_placed(state: UserState, ts: int, plan: Plan, out: Decisions) -> None:
    cart = state.cart
    if cart is not None and cart.started_ms <= ts:
        resolve(state, "order_placed", ts, plan, out)


def resolve(state: UserState, reason: str, ts: int, plan: Plan, out: Decisions) -> None:
    """The cart is done with (ordered or emptied): withdraw its rescue wherever it is."""
    cart = state.cart
    state.cart = None
    if cart is None or cart.rescue_id is None:
        return
    if cart.rescue_emitted:
        out.append(
            NudgeCancellation(
                nudge_id=cart.rescue_id,
                kind="cart_rescue",
                # Where the rescue went: an anonymous cart carried over on identify was
                # rescued under the anonymous key, the partition its message is on.
                user_key=cart.rescue_key or state.key,
                reason=reason,
                at=to_datetime(ts),
                rules_version=plan.version,
                trigger_event_id=cart.cart_id,
            )
        )
        return
    for held in [h for h in state.held if h.nudge.nudge_id == cart.rescue_id]:
        state.held.remove(held)
        out.append(suppression.withdraw(held, reason, ts))


def rescue(state: UserState, plan: Plan, out: Decisions) -> None:
    """The deadline has passed: trigger the cart's one rescue at the deadline's time."""
    cart = state.cart
    assert cart is not None and cart.deadline_ms is not None
    at = cart.deadline_ms
    cart.deadline_ms = None
    cart.rescue_id = nudge_id(state.key, "cart_rescue", cart.cart_id, plan.version)
    cart.rescue_key = state.key
    when = to_datetime(at)
    nudge = Nudge(
        nudge_id=cart.rescue_id,
        kind="cart_rescue",
        user_key=state.key,
        user_id=state.user_id,
        anonymous_id=state.anonymous_id,
        status="emit",
        triggered_at=when,
        decided_at=when,
        cart_id=cart.cart_id,
        items=tuple(
            CartItem(product_id=p, quantity=int(q), price=price)
            for p, (q, price) in cart.items.items()
        ),
        discount_percent=plan.cart_discount,
        score=round(value(state.user, at, plan.decay_user) / 1000, 3),
        signals=top_signals(state.user, plan.top_signals, at, plan.decay_user),
        rules_version=plan.version,
        trigger_event_id=cart.cart_id,
    )
    published = suppression.settle(state, nudge, at, plan)
    if isinstance(published, Nudge):
        cart.rescue_emitted = published.status == "emit"
    out.append(published)
