"""Building events, rules and folds for the domain tests."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from pipeline.domain import Rules, UserState, advance, apply
from pipeline.domain.clock import to_ms
from pipeline.domain.rules import DEFAULT_RULES_FILE, parse_rules
from schemas.events import Event, parse_event
from schemas.messages import Nudge, NudgeCancellation, VipUpgrade

# Noon UTC on a Thursday: outside the default quiet hours.
NOON = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"

Decision = Nudge | NudgeCancellation | VipUpgrade


def default_raw_rules() -> dict[str, Any]:
    path = Path(__file__).parents[3] / "pipeline" / "domain" / DEFAULT_RULES_FILE
    return yaml.safe_load(path.read_text())


def rules_with(**sections: dict[str, Any]) -> Rules:
    """Default rules with sections overridden key by key; no holdout unless asked.

    Quiet hours are off unless a test sets them: they depend on the clock.
    """
    raw = default_raw_rules()
    raw["suppression"]["holdout_share"] = 0.0
    raw["suppression"].pop("quiet_hours")
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return parse_rules(raw, source="test rules")


class Shopper:
    """One browser's events, each a given number of seconds after the previous one."""

    def __init__(
        self,
        anonymous_id: str = "anon-1",
        user_id: str | None = None,
        *,
        start: datetime = NOON,
        timezone: str | None = None,
        seed: int = 1,
    ) -> None:
        self.anonymous_id = anonymous_id
        self.user_id = user_id
        self.clock = start
        self.timezone = timezone
        self._ids = seed * 1_000_000

    def at(self, moment: datetime) -> "Shopper":
        self.clock = moment
        return self

    def event(self, name: str, after_s: float = 1, **properties: Any) -> Event:
        self.clock += timedelta(seconds=after_s)
        self._ids += 1
        raw: dict[str, Any] = {
            "event_id": str(UUID(int=self._ids, version=4)),
            "name": name,
            "timestamp": self.clock.isoformat(),
            "anonymous_id": self.anonymous_id,
            "properties": properties,
        }
        if self.user_id:
            raw["user_id"] = self.user_id
        if self.timezone:
            raw["context"] = {"timezone": self.timezone}
        return parse_event(raw, received_at=self.clock)

    def view(self, product: str = "p1", after_s: float = 1, category: str | None = "c1") -> Event:
        props = {"product_id": product, "price": 10.0}
        if category:
            props["category"] = category
        return self.event("product_view", after_s, **props)

    def linger(self, product: str = "p1", dwell_ms: int = 10_000, after_s: float = 1) -> Event:
        return self.event("spec_linger", after_s, product_id=product, dwell_ms=dwell_ms)

    def add(self, product: str = "p1", qty: int = 1, price: float = 10.0, after_s: float = 1):
        return self.event("add_to_cart", after_s, product_id=product, quantity=qty, price=price)

    def remove(self, product: str = "p1", qty: int = 1, after_s: float = 1) -> Event:
        return self.event("remove_from_cart", after_s, product_id=product, quantity=qty, price=10.0)

    def order(self, order_id: str, products: tuple[str, ...] = ("p1",), after_s: float = 1):
        items = [{"product_id": p, "quantity": 1, "amount": 10.0} for p in products]
        return self.event(
            "order_placed", after_s, order_id=order_id, items=items, total=10.0, currency="EUR"
        )

    def consent(
        self,
        channel: str = "whatsapp",
        granted: bool = True,
        phone: bool = True,
        purpose: str | None = "marketing",
    ):
        # Nudges need marketing consent; purpose=None sends none (transactional only).
        props: dict[str, Any] = {"channel": channel, "granted": granted}
        if purpose is not None:
            props["purpose"] = purpose
        if phone and channel != "email":
            props["phone"] = PHONE
        return self.event("consent", 1, **props)

    def identify(self, user_id: str, after_s: float = 1) -> Event:
        self.user_id = user_id
        return self.event("identify", after_s)


def fold(
    events: list[Event], rules: Rules, state: UserState | None = None
) -> tuple[UserState | None, list[Decision]]:
    decisions: list[Decision] = []
    for event in events:
        state, out = apply(state, event, rules)
        decisions.extend(out)
    return state, decisions


def run_until(state: UserState, moment: datetime, rules: Rules) -> tuple[UserState, list[Decision]]:
    return advance(state, to_ms(moment), rules)


def nudges(decisions: list[Decision], kind: str | None = None) -> list[Nudge]:
    return [d for d in decisions if isinstance(d, Nudge) and (kind is None or d.kind == kind)]


def cancellations(decisions: list[Decision]) -> list[NudgeCancellation]:
    return [d for d in decisions if isinstance(d, NudgeCancellation)]


def upgrades(decisions: list[Decision]) -> list[VipUpgrade]:
    return [d for d in decisions if isinstance(d, VipUpgrade)]
