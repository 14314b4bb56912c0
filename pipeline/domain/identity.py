"""Identity: an anonymous shopper's state carried over to the user they turn out to be.

Streaming reality: the anonymous state lives on the partition of its
anonymous id, the user's on the user id's. ``identify`` is keyed by the
anonymous id (``Event.key``), so it is folded after the anonymous events it
claims; the engine then hands the anonymous state over (``state_to_bytes``)
to the user's partition and calls ``merge`` there. ``wants_merge`` says which
anonymous id an event links to a user.

``merge`` is idempotent: the user state remembers the anonymous ids merged in,
so a re-delivered hand-over changes nothing. Nothing is nudged twice:
triggered rescues, disarmed products, cooldowns and the day's cap carry over.
"""

from pipeline.domain import high_intent
from pipeline.domain.fold import Decision, fire_due
from pipeline.domain.rules import Plan, Rules
from pipeline.domain.scoring import merge_into, value, weakest
from pipeline.domain.state import (
    HAS_PHONE,
    NO_TIME,
    PURPOSE_SLOTS,
    Cart,
    Held,
    Intent,
    ProductIntent,
    UserState,
    consent_entry,
)
from pipeline.domain.vip import RECENT_ORDERS, maybe_upgrade
from schemas.events import Event

MAX_MERGED = 16


def wants_merge(event: Event) -> str | None:
    """The anonymous id whose state goes over to ``event.user_id``, if the event links them."""
    if event.name != "identify" or not event.user_id or event.anonymous_id == event.user_id:
        return None
    return event.anonymous_id


def merge(
    user_state: UserState, anonymous_state: UserState, rules: Rules, at_ms: int
) -> tuple[UserState, list[Decision]]:
    """Fold an anonymous state into the user's; ``anonymous_state`` is not modified."""
    user, anon, plan = user_state, anonymous_state, rules.plan
    if anon.key == user.key or anon.key in user.merged:
        return user, []
    out: list[Decision] = []
    merge_into(user.user, anon.user, plan.decay_user, plan.cap)
    _merge_products(user, anon, plan)
    _merge_categories(user, anon, plan)
    if anon.focus is not None and anon.focus_ms > user.focus_ms:
        user.focus, user.focus_ms = anon.focus, anon.focus_ms
    user.cart = _merge_carts(user.cart, anon.cart, anon.key, plan)
    _merge_orders(user, anon)
    _merge_consent(user, anon)
    user.timezone = user.timezone or anon.timezone
    if anon.cap_day > user.cap_day:
        user.cap_day, user.cap_count = anon.cap_day, anon.cap_count
    elif anon.cap_day == user.cap_day:
        user.cap_count += anon.cap_count
    user.hi_ms = max(user.hi_ms, anon.hi_ms)
    # Their nudges still withdrawable keep the key they went under (their partition).
    sent = {x.nudge_id for x in user.hi_sent}
    user.hi_sent.extend(x for x in anon.hi_sent if x.nudge_id not in sent)
    known = {h.nudge.nudge_id for h in user.held}
    user.held.extend(
        Held(h.deadline_ms, h.release_ms, h.nudge)
        for h in anon.held
        if h.nudge.nudge_id not in known
    )
    _merge_seen(user, anon, plan)
    user.anonymous_id = user.anonymous_id or anon.anonymous_id
    merged = [*user.merged, *(k for k in (*anon.merged, anon.key) if k not in user.merged)]
    user.merged = merged[-MAX_MERGED:]

    trigger = f"merge:{anon.key}"
    for product, score in list(user.products.items()):
        now = value(score, at_ms, plan.decay_product)
        if score.armed and now >= plan.hi_threshold:
            high_intent.check(user, product, score, now, now, at_ms, trigger, plan, out)
    upgrade = maybe_upgrade(user, at_ms, trigger, plan)
    if upgrade is not None:
        out.append(upgrade)
    # The carried-over cart may already be overdue on the user's clock.
    fire_due(user, user.last_ms, plan, out)
    return user, out


def _merge_products(user: UserState, anon: UserState, plan: Plan) -> None:
    for product, theirs in anon.products.items():
        mine = user.products.get(product)
        if mine is None:
            user.products[product] = ProductIntent(
                theirs.t,
                dict(theirs.parts),
                theirs.total,
                armed=theirs.armed,
                crossings=theirs.crossings,
                fired_ms=theirs.fired_ms,
            )
            continue
        merge_into(mine, theirs, plan.decay_product, plan.cap)
        mine.armed = mine.armed and theirs.armed
        mine.crossings += theirs.crossings
        mine.fired_ms = max(mine.fired_ms, theirs.fired_ms)
    at = max(user.last_ms, anon.last_ms)
    while len(user.products) > plan.max_products:
        del user.products[weakest(user.products, at, plan.decay_product)]


def _merge_categories(user: UserState, anon: UserState, plan: Plan) -> None:
    for category, theirs in anon.categories.items():
        mine = user.categories.get(category)
        if mine is None:
            user.categories[category] = Intent(theirs.t, dict(theirs.parts), theirs.total)
        else:
            merge_into(mine, theirs, plan.decay_category, plan.cap)
    at = max(user.last_ms, anon.last_ms)
    while len(user.categories) > plan.max_categories:
        del user.categories[weakest(user.categories, at, plan.decay_category)]


def _merge_carts(
    mine: Cart | None, theirs: Cart | None, theirs_key: str, plan: Plan
) -> Cart | None:
    if theirs is None:
        return mine
    copy = Cart(
        theirs.cart_id,
        theirs.started_ms,
        {p: list(item) for p, item in theirs.items.items()},
        theirs.deadline_ms,
        theirs.checkout_ms,
        theirs.rescue_id,
        theirs.rescue_emitted,
        theirs.rescue_key or theirs_key,
    )
    if mine is None:
        return copy
    # One cart: a triggered rescue wins (never a second one); else the older cart's id.
    if mine.rescue_id is None and (copy.rescue_id is not None or copy.started_ms < mine.started_ms):
        mine.cart_id, mine.rescue_id, mine.rescue_emitted, mine.rescue_key = (
            copy.cart_id,
            copy.rescue_id,
            copy.rescue_emitted,
            copy.rescue_key,
        )
    mine.started_ms = min(mine.started_ms, copy.started_ms)
    for product, (qty, price) in copy.items.items():
        item = mine.items.get(product)
        if item is not None:
            item[0] = max(item[0], qty)
        elif len(mine.items) < plan.cart_max_items:
            mine.items[product] = [qty, price]
    mine.checkout_ms = max(mine.checkout_ms, copy.checkout_ms)
    if mine.rescue_id is not None:
        mine.deadline_ms = None
    else:
        mine.deadline_ms = max(mine.deadline_ms or 0, copy.deadline_ms or 0) or None
    return mine


def _merge_orders(user: UserState, anon: UserState) -> None:
    common = set(user.order_ids) & set(anon.order_ids)
    user.orders += anon.orders - len(common)
    user.order_ids = [*user.order_ids, *(o for o in anon.order_ids if o not in common)]
    del user.order_ids[:-RECENT_ORDERS]
    user.vip = user.vip or anon.vip


def _merge_consent(user: UserState, anon: UserState) -> None:
    # The newer decision per channel and purpose wins; a known phone stays known.
    for channel in anon.consent:
        mine, theirs = consent_entry(user, channel), consent_entry(anon, channel)
        merged = [(mine[0] | theirs[0]) & HAS_PHONE, NO_TIME, NO_TIME]
        for bit, slot in PURPOSE_SLOTS.values():
            newest = theirs if theirs[slot] > mine[slot] else mine
            merged[0] |= newest[0] & bit
            merged[slot] = newest[slot]
        user.consent[channel] = merged


def _merge_seen(user: UserState, anon: UserState, plan: Plan) -> None:
    user.last_ms = max(user.last_ms, anon.last_ms)
    user.horizon_ms = max(user.horizon_ms, anon.horizon_ms)
    seen = user.seen
    for key, ts in anon.seen.items():
        if key not in seen and ts > user.horizon_ms:
            seen[key] = ts
    while len(seen) > plan.dedup_max_ids:
        first = next(iter(seen))
        user.horizon_ms = max(user.horizon_ms, seen.pop(first))
