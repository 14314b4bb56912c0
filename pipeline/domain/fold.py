"""The per-user fold: ``apply`` an event, ``advance`` to a watermark, ``next_deadline``.

Bytewax ``stateful_map`` style: ``(state, input) -> (state, decisions)``. The
state is mutated in place and returned (the agent owns it); decisions are
``schemas.messages`` models, ready to publish.

Time is event time only. Deadlines (cart abandonment, held quiet-hour nudges)
fire when the partition watermark passes them (``advance``) or when the user's
own clock does: ``apply`` first fires the deadlines at or before the event's
time, and no deadline at or before the user's latest event time survives an
``apply``. A fired decision is stamped with its deadline, never with the
watermark, so when ``advance`` is called does not change what is decided.
"""

from collections.abc import Callable
from math import exp

from pipeline.domain import cart, high_intent, suppression, vip
from pipeline.domain.dedup import admit
from pipeline.domain.rules import Plan, Rules
from pipeline.domain.scoring import REANCHOR, add, bump, clear, limit, weakest
from pipeline.domain.signals import (
    ADD_TO_CART,
    CHECKOUT_STARTED,
    DEEP_SCROLL,
    EXIT_INTENT,
    SPEC_LINGER,
)
from pipeline.domain.state import (
    HAS_PHONE,
    PURPOSE_SLOTS,
    Intent,
    ProductIntent,
    UserState,
    consent_entry,
)
from schemas.events import Event
from schemas.messages import Nudge, NudgeCancellation, NudgeHeld, VipUpgrade

Decision = Nudge | NudgeHeld | NudgeCancellation | VipUpgrade
Handler = Callable[[UserState, Event, int, Plan, list], None]
# The low 64 bits of an event id: enough to tell a user's recent events apart.
_MASK64 = (1 << 64) - 1


def apply(state: UserState | None, event: Event, rules: Rules) -> tuple[UserState, list[Decision]]:
    """Fold one event into the user's state (``None`` for a user not seen yet)."""
    plan = rules.plan
    ts = event.ts_ms
    if state is None:
        state = UserState(event.key, event.user_id, event.anonymous_id)
    out: list[Decision] = []
    # Inline check before the exact one in fire_due: this runs for every event.
    basket = state.cart
    if ts > state.last_ms and (
        state.held
        or (basket is not None and basket.deadline_ms is not None and basket.deadline_ms <= ts)
    ):
        fire_due(state, ts, plan, out)
    name = event.name
    if not admit(state, event.event_id.int & _MASK64, ts, name, plan):
        return state, out
    state.anonymous_id = event.anonymous_id
    if state.user_id is None and event.user_id is not None:
        state.user_id = event.user_id
    tz = event.context.timezone
    if tz is not None and tz != state.timezone:
        state.timezone = tz
    # Standard events' properties are trusted: events come through parse_event/load_event.
    _HANDLERS.get(name, _other)(state, event, ts, plan, out)
    # A late event may have made a deadline that the user's clock has already passed.
    basket = state.cart
    if state.held or (
        basket is not None
        and basket.deadline_ms is not None
        and basket.deadline_ms <= state.last_ms
    ):
        fire_due(state, state.last_ms, plan, out)
    return state, out


def advance(state: UserState, watermark_ms: int, rules: Rules) -> tuple[UserState, list[Decision]]:
    """Fire every deadline at or before the watermark, in time order."""
    out: list[Decision] = []
    deadline = next_deadline(state)
    if deadline is not None and deadline <= watermark_ms:
        fire_due(state, watermark_ms, rules.plan, out)
    return state, out


def next_deadline(state: UserState) -> int | None:
    """The earliest pending deadline (epoch ms), for the agent's per-partition index."""
    basket = state.cart
    earliest = basket.deadline_ms if basket is not None else None
    for held in state.held:
        if earliest is None or held.deadline_ms < earliest:
            earliest = held.deadline_ms
    return earliest


def fire_due(state: UserState, until: int, plan: Plan, out: list) -> None:
    """Fire the deadlines at or before ``until``, earliest first (held nudges win ties)."""
    while True:
        basket = state.cart
        cart_due = basket.deadline_ms if basket is not None else None
        held = min(state.held, key=lambda h: h.deadline_ms) if state.held else None
        if (
            held is not None
            and held.deadline_ms <= until
            and (cart_due is None or held.deadline_ms <= cart_due)
        ):
            state.held.remove(held)
            published = suppression.release(state, held, plan)
            if basket is not None and basket.rescue_id == published.nudge_id:
                basket.rescue_emitted = published.status == "emit"
            high_intent.note_published(state, published, held.release_ms, plan)
            out.append(published)
        elif cart_due is not None and cart_due <= until:
            cart.rescue(state, plan, out)
        else:
            return


# --- scoring -----------------------------------------------------------------


def _score(
    state: UserState,
    code: str,
    amount: int,
    ts: int,
    plan: Plan,
    out: list,
    event: Event,
    product: str | None,
    category: str | None,
) -> None:
    """Add a signal to the user's score, and to its product's and category's if any."""
    # The user's score is touched by almost every event: scoring.bump, inlined.
    user = state.user
    age = plan.decay_user * (ts - user.t)
    if age > REANCHOR:
        bump(user, code, amount, ts, plan.decay_user, plan.cap)
    else:
        growth = exp(age)
        added = int(amount * growth)
        if added > 0:
            user.parts[code] = user.parts.get(code, 0) + added
            user.total += added
            if user.total > plan.cap * growth:
                limit(user, plan.cap * growth)
    if product is not None:
        products = state.products
        score = products.get(product)
        if score is None:
            if len(products) >= plan.max_products:
                del products[weakest(products, ts, plan.decay_product)]
            score = products[product] = ProductIntent(ts)
        before, after = add(score, code, amount, ts, plan.decay_product, plan.cap)
        if after >= plan.hi_threshold or not score.armed:
            high_intent.check(
                state, product, score, before, after, ts, str(event.event_id), plan, out
            )
    if category is not None and plan.max_categories:
        categories = state.categories
        group = categories.get(category)
        if group is None:
            if len(categories) >= plan.max_categories:
                del categories[weakest(categories, ts, plan.decay_category)]
            group = categories[category] = Intent(ts)
        bump(group, code, amount, ts, plan.decay_category, plan.cap)


def _focus(state: UserState, ts: int, plan: Plan) -> str | None:
    """The product in front of the shopper, if they viewed one recently."""
    if state.focus is not None and abs(ts - state.focus_ms) <= plan.focus_window_ms:
        return state.focus
    return None


# --- handlers, one per standard event ----------------------------------------


def _other(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    # page_view, search, button_click and custom events: user-level signal, activity.
    signal = plan.signals.get(event.name)
    if signal is not None:
        _score(state, signal[0], signal[1], ts, plan, out, event, None, None)
    if state.cart is not None and state.cart.deadline_ms is not None:
        cart.touch(state, plan)


def _product_view(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    props = event.properties
    product = props["product_id"]
    if ts >= state.focus_ms:
        state.focus, state.focus_ms = product, ts
    signal = plan.signals.get("product_view")
    if signal is not None:
        code, amount = signal
        _score(state, code, amount, ts, plan, out, event, product, props.get("category"))
    if state.cart is not None and state.cart.deadline_ms is not None:
        cart.touch(state, plan)


def _spec_linger(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    props = event.properties
    product = props["product_id"]
    if ts >= state.focus_ms:
        state.focus, state.focus_ms = product, ts
    dwell = props["dwell_ms"]
    if dwell >= plan.linger_min_ms:
        amount = min(plan.linger_max, int(dwell * plan.linger_per_ms))
        if amount > 0:
            category = props.get("category")
            _score(state, SPEC_LINGER, amount, ts, plan, out, event, product, category)
    if state.cart is not None and state.cart.deadline_ms is not None:
        cart.touch(state, plan)


def _deep_scroll(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    weight = plan.weights.get("deep_scroll")
    if weight:
        amount = int(weight * min(100.0, float(event.properties["percentage"])) / 100)
        if amount > 0:
            product = _focus(state, ts, plan)
            _score(state, DEEP_SCROLL, amount, ts, plan, out, event, product, None)
    if state.cart is not None and state.cart.deadline_ms is not None:
        cart.touch(state, plan)


def _add_to_cart(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    props = event.properties
    product = props["product_id"]
    qty, price = int(props["quantity"]), float(props["price"])
    if qty < 1:
        return
    cart.add_item(state, str(event.event_id), product, qty, price, ts, plan)
    amount = plan.weights.get("add_to_cart")
    if amount:
        _score(state, ADD_TO_CART, amount, ts, plan, out, event, product, props.get("category"))
    if state.cart is not None and state.cart.deadline_ms is not None:
        cart.touch(state, plan)


def _remove_from_cart(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    props = event.properties
    cart.remove_item(state, props["product_id"], int(props["quantity"]), ts, plan, out)
    if state.cart is not None and state.cart.deadline_ms is not None:
        cart.touch(state, plan)


def _checkout_started(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    amount = plan.weights.get("checkout_started")
    if amount:
        _score(state, CHECKOUT_STARTED, amount, ts, plan, out, event, None, None)
    cart.checkout(state, ts, plan)


def _exit_intent(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    amount = plan.weights.get("exit_intent")
    if amount:
        _score(state, EXIT_INTENT, amount, ts, plan, out, event, _focus(state, ts, plan), None)
    cart.exit_intent(state, ts, plan)


def _order_placed(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    props = event.properties
    if not vip.count_order(state, str(props["order_id"])):
        return
    cart.order_placed(state, ts, plan, out)
    bought = {str(item["product_id"]) for item in props.get("items", ())}
    for product in bought:
        # Intent for what was just bought is spent; its trigger state stays.
        score = state.products.get(product)
        if score is not None:
            clear(score)
    high_intent.withdraw_held(state, bought, ts, out)
    high_intent.withdraw_sent(state, bought, ts, str(event.event_id), plan, out)
    upgrade = vip.maybe_upgrade(state, ts, str(event.event_id), plan)
    if upgrade is not None:
        out.append(upgrade)


def _consent(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    props = event.properties
    channel = props["channel"]
    if channel not in suppression.CHANNELS:
        return
    # Without a purpose a consent is for transactional messages (order updates) only.
    purpose = "marketing" if props.get("purpose") == "marketing" else "transactional"
    entry = consent_entry(state, channel)
    # Only whether a phone is known is kept; the dispatcher stores the number.
    if props.get("phone_ref") or props.get("phone"):  # the collector seals phones
        entry[0] |= HAS_PHONE
    bit, slot = PURPOSE_SLOTS[purpose]
    if ts >= entry[slot]:  # the newest decision per purpose wins, whatever the arrival order
        entry[0] = (entry[0] | bit) if props["granted"] is True else (entry[0] & ~bit)
        entry[slot] = ts
    state.consent[channel] = entry


def _identify(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    # The link itself is recorded by the merge (identity.merge); nothing to score.
    pass


def _nothing(state: UserState, event: Event, ts: int, plan: Plan, out: list) -> None:
    pass


_HANDLERS: dict[str, Handler] = {
    "product_view": _product_view,
    "spec_linger": _spec_linger,
    "deep_scroll": _deep_scroll,
    "add_to_cart": _add_to_cart,
    "remove_from_cart": _remove_from_cart,
    "checkout_started": _checkout_started,
    "exit_intent": _exit_intent,
    "order_placed": _order_placed,
    "consent": _consent,
    "identify": _identify,
    # A server event about the catalogue, not the shopper's activity.
    "price_drop": _nothing,
}
