"""VIP: the Nth distinct order upgrades a user, once, with a single-use discount token.

The domain decides and states the token's claims (``VipUpgrade.claims()``); the
agent signs them with the settings' key. A VIP upgrade is an entitlement, not
a nudge: it is neither capped nor held out; ``channels`` tells the dispatcher
where it may announce it.
"""

from pipeline.domain.clock import to_datetime
from pipeline.domain.ids import vip_token_id
from pipeline.domain.rules import Plan
from pipeline.domain.state import UserState
from pipeline.domain.suppression import allowed_channels
from schemas.messages import VipUpgrade

# Recent order ids kept to drop an order the store backend sends twice.
RECENT_ORDERS = 8


def count_order(state: UserState, order_id: str) -> bool:
    """Count a new order; False if this order id was already counted."""
    if order_id in state.order_ids:
        return False
    state.order_ids.append(order_id)
    del state.order_ids[:-RECENT_ORDERS]
    state.orders += 1
    return True


def maybe_upgrade(state: UserState, ts: int, event_id: str, plan: Plan) -> VipUpgrade | None:
    if state.vip or state.orders < plan.vip_orders:
        return None
    state.vip = True
    return VipUpgrade(
        token_id=vip_token_id(state.key, event_id, plan.version),
        user_key=state.key,
        user_id=state.user_id,
        anonymous_id=state.anonymous_id,
        discount_percent=plan.vip_discount,
        issued_at=to_datetime(ts),
        expires_at=to_datetime(ts + plan.vip_ttl_ms),
        order_count=state.orders,
        channels=allowed_channels(state),
        rules_version=plan.version,
        trigger_event_id=event_id,
        timezone=state.timezone,
    )
