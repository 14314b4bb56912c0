"""Segment rules and phrases, without a warehouse: validation, SQL shape, the parser."""

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.segment_phrases import parse_phrase
from schemas.segments import FIELDS, compile_rule, load_rule


def rule(*conditions: dict, op: str = "AND") -> dict:
    return {"op": op, "rules": list(conditions)}


def test_compiled_sql_names_only_whitelisted_columns_and_binds_every_value():
    tree = load_rule(
        rule(
            {"field": "total_spend", "op": ">", "value": 5000},
            rule(
                {"field": "country", "op": "in", "value": ["DE'--", "FR"]},
                {"field": "last_seen", "op": "inactive_days", "value": 30},
                op="OR",
            ),
        )
    )
    compiled = compile_rule(tree, now_ms=1_700_000_000_000)
    assert "DE'--" not in compiled.sql and "5000" not in compiled.sql
    assert compiled.params == {
        "p0": 5000.0,
        "p1": ["DE'--", "FR"],
        "p2": 1_700_000_000_000 - 30 * 86_400_000,
    }
    without_placeholders = re.sub(r"\{[^}]*\}", " ", compiled.sql)
    words = set(without_placeholders.replace("(", " ").replace(")", " ").replace(",", " ").split())
    identifiers = {w for w in words if w.isidentifier()}
    keywords = {"AND", "OR", "IN", "NOT", "IS", "NULL", "BETWEEN"}
    assert identifiers <= set(FIELDS) | keywords | {"fromUnixTimestamp64Milli"}


@pytest.mark.parametrize(
    "bad",
    [
        rule({"field": "email", "op": "=", "value": "x"}),
        rule({"field": "orders", "op": "contains", "value": "1"}),
        rule({"field": "orders", "op": "=", "value": True}),
        rule({"field": "total_spend", "op": ">", "value": float("inf")}),
        rule({"field": "channels", "op": "contains", "value": "pigeon"}),
        rule({"field": "last_seen", "op": "inactive_days", "value": -1}),
        rule({"field": "country", "op": "in", "value": []}),
        rule({"field": "orders", "op": "=", "value": 1, "sql": "1=1"}),
        {
            "op": "AND",
            "rules": [
                rule(rule(rule(rule(rule(rule(rule({"field": "orders", "op": "=", "value": 1})))))))
            ],
        },
    ],
)
def test_invalid_rules_are_refused(bad: dict):
    with pytest.raises(ValidationError):
        load_rule(bad)


PHRASES = {
    "customers who spent over 5000 but haven't visited in 30 days": rule(
        {"field": "total_spend", "op": ">", "value": 5000.0},
        {"field": "last_seen", "op": "inactive_days", "value": 30},
    ),
    "vip customers on whatsapp": rule(
        {"field": "tier", "op": "=", "value": "vip"},
        {"field": "channels", "op": "contains", "value": "whatsapp"},
    ),
    "spent between $100 and $500 or 3+ orders": rule(
        {"field": "total_spend", "op": "between", "value": [100.0, 500.0]},
        {"field": "orders", "op": ">=", "value": 3},
        op="OR",
    ),
    "never ordered and visited in the last 2 weeks": rule(
        {"field": "orders", "op": "=", "value": 0},
        {"field": "last_seen", "op": "within_days", "value": 14},
    ),
    "interested in shoes, from Germany, on mobile": rule(
        {"field": "top_categories", "op": "contains", "value": "shoes"},
        {"field": "country", "op": "=", "value": "DE"},
        {"field": "device", "op": "=", "value": "mobile"},
    ),
    "spent at least 1.5k and have not ordered in 2 months": rule(
        {"field": "total_spend", "op": ">=", "value": 1500.0},
        {"field": "last_order", "op": "inactive_days", "value": 60},
    ),
    "with sms consent or more than 5 visits": rule(
        {"field": "channels", "op": "contains", "value": "sms"},
        {"field": "visits", "op": ">", "value": 5},
        op="OR",
    ),
}


@pytest.mark.parametrize("text", PHRASES)
def test_documented_phrases_become_rules(text: str):
    parsed = parse_phrase(text)
    assert parsed.unknown == []
    assert parsed.rule is not None
    assert parsed.rule.model_dump() == load_rule(PHRASES[text]).model_dump()


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("customers who spent over 5000 and are tall", ["tall"]),
        ("loyal fans of jazz", ["loyal"]),
        ("people", ["people"]),
    ],
)
def test_words_not_understood_are_named_and_nothing_is_guessed(text: str, unknown: list[str]):
    parsed = parse_phrase(text)
    assert parsed.rule is None
    assert parsed.unknown == unknown


hostile_numbers = (
    st.integers()
    | st.integers(min_value=10**300, max_value=10**4000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**64, -(2**63) - 1, 10**400, float("nan"), float("inf")])
)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(sorted(FIELDS)),
    op=st.sampled_from(["=", ">", "between", "in", "inactive_days", "within_days"]),
    value=hostile_numbers | st.lists(hostile_numbers, min_size=1, max_size=3),
)
def test_any_number_in_a_condition_is_accepted_or_refused_never_raised(field, op, value):
    """Integers beyond 64 bits (10**400 has no float), NaN, infinities: a ValidationError
    (a 422 naming the field) or a valid condition, nothing else."""
    with contextlib.suppress(ValidationError):
        load_rule({"op": "AND", "rules": [{"field": field, "op": op, "value": value}]})


@settings(max_examples=200, deadline=None)
@given(
    number=st.integers(min_value=0, max_value=10**500).map(str)
    | st.sampled_from(["\xb2", "\u0661\u0662", "\uff11\uff12", "9" * 5000, "1e309"]),
    template=st.sampled_from(
        [
            "inactive for {} days",
            "not visited in the last {} days",
            "spent more than {} dollars",
            "more than {} orders",
            "intent score above {}",
            "customers who ordered in the last {} weeks",
        ]
    ),
)
def test_a_phrase_with_any_number_is_read_or_reported_never_raised(number: str, template: str):
    parsed = parse_phrase(template.format(number))
    assert parsed.rule is not None or parsed.unknown
