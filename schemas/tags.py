"""Auto-tags: what a segment or a campaign is about, in words an operator filters by.

Derived each time from what is stored (a segment's rule; a campaign's rule, offer and
measured outcome), never stored themselves, so a tag cannot drift from what it
describes. Pure and deterministic.

A condition tags its rule only where it *selects* something: ``!=`` and ``not_in``
exclude, so they say what a segment is not about and tag nothing. Conditions under an
OR tag too: "VIPs or anyone who spent over 500" is about high value either way.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.segments import Condition, Group, conditions

# Every tag, and what earns it: the API's documentation and the console's filter list.
TAGS: dict[str, str] = {
    "win-back": "shoppers not seen, or not ordering, for a while (inactive_days, or a "
    "last_seen / last_order before a date)",
    "high-value": "a floor on total spend, or the VIP tier",
    "vip": "the VIP tier",
    "first-order": "shoppers who have not ordered yet (orders = 0 or < 1)",
    "repeat-buyer": "shoppers with two orders or more",
    "recent-buyer": "an order within the last days",
    "new-visitor": "first seen within the last days",
    "active": "seen within the last days",
    "high-intent": "a floor on the engine's intent score",
    "engaged": "a floor on visits",
    "category": "a product category",
    "geo": "a country",
    "device": "a device",
    "whatsapp": "reachable on WhatsApp (consent with a phone, or the channel chosen)",
    "sms": "reachable by SMS (consent with a phone, or the channel chosen)",
    "discount": "a campaign offering a discount below 20 %",
    "deep-discount": "a campaign offering 20 % or more",
    "product": "a campaign naming a product",
    "no-holdout": "a campaign without a holdout: its uplift cannot be measured",
    "winning": "a launched campaign whose uplift's 95 % interval is above zero",
    "losing": "a launched campaign whose uplift's 95 % interval is below zero",
}

DEEP_DISCOUNT_PERCENT = 20.0
_SELECTING = {"=", ">", ">=", "<", "<=", "in", "contains", "between"}
_FLOOR = {">", ">=", "between"}


def _lower_bound(condition: Condition) -> float | None:
    value = condition.value
    if condition.op == "between":
        return float(value[0])
    if condition.op in (">", ">="):
        return float(value)
    if condition.op == "=" and not isinstance(value, str | bool):
        return float(value)
    return None


def _values(condition: Condition) -> list[Any]:
    return list(condition.value) if isinstance(condition.value, list) else [condition.value]


def _condition_tags(c: Condition) -> Iterable[str]:
    field, op = c.field, c.op
    if op not in _SELECTING and op not in ("inactive_days", "within_days"):
        return
    if field in ("last_seen", "last_order") and op in ("inactive_days", "<", "<="):
        yield "win-back"
    if field == "last_order" and op == "within_days":
        yield "recent-buyer"
    if field == "first_seen" and op == "within_days":
        yield "new-visitor"
    if field == "last_seen" and op == "within_days":
        yield "active"
    if field == "total_spend" and (_lower_bound(c) or 0) > 0:
        yield "high-value"
    if field == "tier" and "vip" in _values(c):
        yield from ("vip", "high-value")
    if field == "orders":
        # Orders are whole numbers: "> 1" is a floor of 2, "< 1" a ceiling of 0.
        floor = _lower_bound(c)
        if floor is not None and op == ">":
            floor += 1
        ceiling = c.value - 1 if op == "<" else c.value if op in ("<=", "=") else None
        if ceiling == 0:
            yield "first-order"
        elif floor is not None and floor >= 2:
            yield "repeat-buyer"
    if field == "intent_score" and op in _FLOOR and (_lower_bound(c) or 0) > 0:
        yield "high-intent"
    if field == "visits" and op in _FLOOR and (_lower_bound(c) or 0) > 1:
        yield "engaged"
    if field == "top_categories":
        yield "category"
    if field == "country":
        yield "geo"
    if field == "device":
        yield "device"
    for channel in ("whatsapp", "sms"):
        if field == f"consent_{channel}" and c.value is True and op == "=":
            yield channel
        if field == "channels" and channel in _values(c):
            yield channel


def _ordered(found: Iterable[str]) -> list[str]:
    """Distinct, in TAGS' order: the same rule always reads the same."""
    seen = set(found)
    return [tag for tag in TAGS if tag in seen]


def segment_tags(rule: Group) -> list[str]:
    return _ordered(tag for c in conditions(rule) for tag in _condition_tags(c))


def campaign_tags(rule: Group | None, report: Mapping[str, Any]) -> list[str]:
    """A campaign's tags: its audience rule's, its offer's and, once launched, its outcome's
    (``report`` is a row of /v1/campaigns: discount_percent, holdout_share, product,
    status, holdout, uplift_ci_low, uplift_ci_high). ``rule`` is None when the stored
    rule no longer loads (the campaign failed for it): the offer still tags it."""
    found = list(segment_tags(rule)) if rule is not None else []
    discount = float(report.get("discount_percent") or 0)
    if discount > 0:
        found.append("deep-discount" if discount >= DEEP_DISCOUNT_PERCENT else "discount")
    if report.get("product"):
        found.append("product")
    if float(report.get("holdout_share") or 0) == 0:
        found.append("no-holdout")
    elif report.get("status") == "launched" and int(report.get("holdout") or 0) > 0:
        low, high = float(report.get("uplift_ci_low", 0)), float(report.get("uplift_ci_high", 0))
        if low > 0:
            found.append("winning")
        elif high < 0:
            found.append("losing")
    return _ordered(found)
