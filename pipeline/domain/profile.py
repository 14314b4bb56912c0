"""Reading a user's scores at a given time, for profiles and dashboards."""

from dataclasses import dataclass

from pipeline.domain.clock import to_datetime
from pipeline.domain.rules import Rules
from pipeline.domain.scoring import Signals, top_signals, value
from pipeline.domain.state import GRANTED, HAS_PHONE, MARKETING, NO_TIME, UserState, consent_entry


@dataclass(frozen=True, slots=True)
class ScoreView:
    score: float
    signals: Signals


@dataclass(frozen=True, slots=True)
class CartView:
    cart_id: str
    items: dict[str, dict[str, float]]  # product -> {quantity, price}
    rescue_due: str | None  # ISO time the rescue fires, if it is pending
    rescue_id: str | None


@dataclass(frozen=True, slots=True)
class ConsentView:
    granted: bool  # transactional: order updates
    has_phone: bool
    at: str | None  # ISO time of the latest transactional decision
    marketing: bool = False  # offers: nudges, VIP upgrades, campaigns
    marketing_at: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    user_key: str
    user_id: str | None
    tier: str  # "vip" or "standard"
    user: ScoreView
    products: dict[str, ScoreView]
    categories: dict[str, ScoreView]
    cart: CartView | None
    consent: dict[str, ConsentView]
    orders: int
    last_seen: str | None


def profile(state: UserState, at_ms: int, rules: Rules) -> Profile:
    """Scores decayed to ``at_ms`` (event time), with their top signals."""
    plan = rules.plan

    def view(score, rate: float) -> ScoreView:
        return ScoreView(
            round(value(score, at_ms, rate) / 1000, 3),
            top_signals(score, plan.top_signals, at_ms, rate),
        )

    basket = state.cart
    cart = None
    if basket is not None:
        cart = CartView(
            cart_id=basket.cart_id,
            items={p: {"quantity": q, "price": price} for p, (q, price) in basket.items.items()},
            rescue_due=_iso(basket.deadline_ms) if basket.deadline_ms is not None else None,
            rescue_id=basket.rescue_id,
        )
    return Profile(
        user_key=state.key,
        user_id=state.user_id,
        tier="vip" if state.vip else "standard",
        user=view(state.user, plan.decay_user),
        products={k: view(s, plan.decay_product) for k, s in state.products.items()},
        categories={k: view(s, plan.decay_category) for k, s in state.categories.items()},
        cart=cart,
        consent={channel: _consent_view(state, channel) for channel in state.consent},
        orders=state.orders,
        last_seen=_iso(state.last_ms) if state.last_ms >= 0 else None,
    )


def _iso(ms: int) -> str:
    return to_datetime(ms).isoformat().replace("+00:00", "Z")


def _consent_view(state: UserState, channel: str) -> ConsentView:
    flags, at, marketing_at = consent_entry(state, channel)
    return ConsentView(
        granted=bool(flags & GRANTED),
        has_phone=bool(flags & HAS_PHONE),
        at=_iso(at) if at != NO_TIME else None,
        marketing=bool(flags & MARKETING),
        marketing_at=_iso(marketing_at) if marketing_at != NO_TIME else None,
    )
