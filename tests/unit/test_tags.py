"""Auto-tags of segments and campaigns (schemas/tags.py): what earns each tag, and the
properties any rule's tags keep."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.segments import Condition, Group, load_rule
from schemas.tags import TAGS, campaign_tags, segment_tags


def rule(*conditions: dict, op: str = "AND") -> Group:
    return load_rule({"op": op, "rules": list(conditions)})


def c(field: str, op: str, value: Any) -> dict:
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([c("last_seen", "inactive_days", 30)], ["win-back"]),
        ([c("last_order", "<", "2026-01-01T00:00:00Z")], ["win-back"]),
        ([c("total_spend", ">", 500)], ["high-value"]),
        ([c("total_spend", "between", [100, 900])], ["high-value"]),
        ([c("total_spend", "<", 500)], []),
        ([c("tier", "=", "vip")], ["high-value", "vip"]),
        ([c("tier", "in", ["standard"])], []),
        ([c("orders", "=", 0)], ["first-order"]),
        ([c("orders", "<", 1)], ["first-order"]),
        ([c("orders", "<", 3)], []),
        ([c("orders", ">=", 2)], ["repeat-buyer"]),
        ([c("orders", ">", 1)], ["repeat-buyer"]),
        ([c("orders", ">", 0)], []),
        ([c("last_order", "within_days", 7)], ["recent-buyer"]),
        ([c("first_seen", "within_days", 7)], ["new-visitor"]),
        ([c("last_seen", "within_days", 2)], ["active"]),
        ([c("intent_score", ">=", 0.7)], ["high-intent"]),
        ([c("visits", ">", 5)], ["engaged"]),
        ([c("top_categories", "contains", "shoes")], ["category"]),
        ([c("country", "=", "DE"), c("device", "=", "mobile")], ["geo", "device"]),
        ([c("consent_whatsapp", "=", True)], ["whatsapp"]),
        ([c("consent_sms", "=", False)], []),
        ([c("channels", "contains", "sms")], ["sms"]),
        # Exclusions say what a segment is not about.
        ([c("country", "!=", "DE"), c("tier", "not_in", ["vip"])], []),
        (
            [c("last_seen", "inactive_days", 60), c("total_spend", ">=", 1000)],
            ["win-back", "high-value"],
        ),
    ],
)
def test_what_earns_each_tag(conditions: list[dict], expected: list[str]):
    assert segment_tags(rule(*conditions)) == expected


def test_a_nested_or_tags_like_an_and():
    nested = rule(
        c("country", "=", "FR"),
        {"op": "OR", "rules": [c("tier", "=", "vip"), c("total_spend", ">", 500)]},
    )
    assert segment_tags(nested) == ["high-value", "vip", "geo"]


WIN_BACK = rule(c("last_seen", "inactive_days", 30))


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"discount_percent": 10, "holdout_share": 0.1}, ["win-back", "discount"]),
        (
            {"discount_percent": 25, "holdout_share": 0, "product": "p-1"},
            ["win-back", "deep-discount", "product", "no-holdout"],
        ),
        (
            {
                "discount_percent": 10,
                "holdout_share": 0.1,
                "status": "launched",
                "holdout": 40,
                "uplift_ci_low": 0.004,
                "uplift_ci_high": 0.014,
            },
            ["win-back", "discount", "winning"],
        ),
        (
            {
                "discount_percent": 10,
                "holdout_share": 0.1,
                "status": "launched",
                "holdout": 40,
                "uplift_ci_low": -0.03,
                "uplift_ci_high": -0.001,
            },
            ["win-back", "discount", "losing"],
        ),
        # An interval across zero, or no one held out yet: neither.
        (
            {
                "discount_percent": 10,
                "holdout_share": 0.1,
                "status": "launched",
                "holdout": 40,
                "uplift_ci_low": -0.01,
                "uplift_ci_high": 0.02,
            },
            ["win-back", "discount"],
        ),
        (
            {
                "discount_percent": 10,
                "holdout_share": 0.1,
                "status": "launched",
                "holdout": 0,
                "uplift_ci_low": 0.5,
                "uplift_ci_high": 0.6,
            },
            ["win-back", "discount"],
        ),
    ],
)
def test_a_campaigns_offer_and_measured_outcome_tag_it(report: dict, expected: list[str]):
    assert campaign_tags(WIN_BACK, report) == expected


def test_a_campaign_whose_rule_no_longer_loads_is_tagged_by_its_offer():
    assert campaign_tags(None, {"discount_percent": 10, "holdout_share": 0}) == [
        "discount",
        "no-holdout",
    ]


# --- properties over any rule ---------------------------------------------------------

# field → (operators it takes, its values)
FIELD_VALUES = {
    "total_spend": (["=", "!=", ">", ">=", "<", "<=", "in", "not_in"], st.integers(-10, 10**4)),
    "orders": (["=", "!=", ">", ">=", "<", "<=", "in", "not_in"], st.integers(0, 20)),
    "visits": (["=", "!=", ">", ">=", "<", "<=", "in", "not_in"], st.integers(0, 50)),
    "intent_score": (["=", "!=", ">", ">=", "<", "<="], st.floats(0, 1)),
    "country": (["=", "!=", "in", "not_in"], st.sampled_from(["DE", "FR", ""])),
    "tier": (["=", "!=", "in", "not_in"], st.sampled_from(["vip", "standard"])),
    "consent_whatsapp": (["=", "!="], st.booleans()),
    "last_seen": (["inactive_days", "within_days"], st.integers(0, 400)),
    "first_seen": (["inactive_days", "within_days"], st.integers(0, 400)),
}


@st.composite
def conditions(draw: st.DrawFn) -> dict:
    field = draw(st.sampled_from(sorted(FIELD_VALUES)))
    ops, strategy = FIELD_VALUES[field]
    op, value = draw(st.sampled_from(ops)), draw(strategy)
    value = [value] if op in ("in", "not_in") else value
    return Condition(field=field, op=op, value=value).model_dump()


@given(st.lists(conditions(), min_size=1, max_size=6), st.sampled_from(["AND", "OR"]))
def test_tags_are_known_ordered_and_only_grow_with_more_conditions(
    picked: list[dict], op: str
) -> None:
    tags = segment_tags(rule(*picked, op=op))
    assert set(tags) <= set(TAGS) and tags == [t for t in TAGS if t in tags]
    assert segment_tags(rule(*picked, op=op)) == tags  # derived, deterministic
    for cut in range(1, len(picked)):
        assert set(segment_tags(rule(*picked[:cut], op=op))) <= set(tags)


@given(st.lists(conditions(), min_size=1, max_size=6))
def test_exclusions_alone_tag_nothing(picked: list[dict]) -> None:
    excluding = [p for p in picked if p["op"] in ("!=", "not_in")]
    if excluding:
        assert segment_tags(rule(*excluding)) == []
