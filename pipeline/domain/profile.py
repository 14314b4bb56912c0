"""Reading a user's scores at a given time, for profiles and dashboards."""

from dataclasses import dataclass

from pipeline.domain.rules import Rules
from pipeline.domain.scoring import Signals, top_signals, value
from pipeline.domain.state import UserState


@dataclass(frozen=True, slots=True)
class ScoreView:
    score: float
    signals: Signals


@dataclass(frozen=True, slots=True)
class Profile:
    user: ScoreView
    products: dict[str, ScoreView]
    categories: dict[str, ScoreView]
    cart_items: int
    orders: int
    vip: bool


def profile(state: UserState, at_ms: int, rules: Rules) -> Profile:
    """Scores decayed to ``at_ms`` (event time), with their top signals."""
    plan = rules.plan

    def view(score, rate: float) -> ScoreView:
        return ScoreView(
            round(value(score, at_ms, rate) / 1000, 3),
            top_signals(score, plan.top_signals, at_ms, rate),
        )

    return Profile(
        user=view(state.user, plan.decay_user),
        products={k: view(s, plan.decay_product) for k, s in state.products.items()},
        categories={k: view(s, plan.decay_category) for k, s in state.categories.items()},
        cart_items=len(state.cart.items) if state.cart else 0,
        orders=state.orders,
        vip=state.vip,
    )
