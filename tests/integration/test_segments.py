"""Segments on the real warehouse: profiles, rule previews against pandas, the API.

- the ``profiles`` view equals aggregates computed independently from the events;
- for generated rule trees (hypothesis), the members a rule selects equal an
  independent pandas filter over the same profiles;
- the API stores, previews (masked) and parses; bad rules are refused with the
  field and reason, and injection attempts through fields and values are refused
  or bound (the data stays intact).
"""

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.queries.segments import member_keys
from schemas.keys import hash_api_key
from schemas.segments import DAY_MS, FIELDS, OPERATORS, Condition, Group, load_rule
from tests import support
from tests.shoppers import CATEGORIES, Shoppers, utc, write_shoppers

ADMIN_KEY = "ak_segments-test"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
MASTER = "test-pii-master-key"
NOW = datetime.now(UTC).replace(microsecond=0)
NOW_MS = int(NOW.timestamp() * 1000)
PROFILE_COLUMNS = [
    "user_key",
    "total_spend",
    "orders",
    "visits",
    "first_seen",
    "last_seen",
    "last_order",
    "top_categories",
    "intent_score",
    "tier",
    "channels",
    "consent_whatsapp",
    "consent_sms",
    "consent_email",
    "country",
    "device",
]


@pytest.fixture(scope="module")
def shoppers(clickhouse: Client) -> Shoppers:
    return write_shoppers(clickhouse, 160, seed=7, now=NOW, master=MASTER)


def _ms(moment: datetime | None) -> float:
    if moment is None or pd.isna(moment):
        return float("nan")
    return utc(moment).timestamp() * 1000  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def profiles(clickhouse: Client, shoppers: Shoppers) -> pd.DataFrame:
    rows = clickhouse.query(f"SELECT {', '.join(PROFILE_COLUMNS)} FROM profiles").result_rows
    frame = pd.DataFrame(rows, columns=PROFILE_COLUMNS, dtype=object)
    for column in ("first_seen", "last_seen", "last_order"):
        frame[column] = [_ms(v) for v in frame[column]]
    return frame.set_index("user_key", drop=False)


api = support.in_process_api(admin_key_hashes=hash_api_key(ADMIN_KEY))


# --- profiles ---------------------------------------------------------------------------


def test_profiles_equal_aggregates_of_the_events(shoppers: Shoppers, profiles: pd.DataFrame):
    assert set(profiles.index) == set(shoppers.user_keys)
    by_user: dict[str, list[dict]] = {}
    for event in shoppers.events:
        by_user.setdefault(event["user_id"], []).append(event)
    for user, events in by_user.items():
        row = profiles.loc[user]
        orders = {e["properties"]["order_id"]: e for e in events if e["name"] == "order_placed"}
        assert row.orders == len(orders)
        assert row.total_spend == pytest.approx(
            sum(o["properties"]["total"] for o in orders.values())
        )
        assert row.visits == len({e["session_id"] for e in events})
        times = [datetime.fromisoformat(e["timestamp"]) for e in events]
        assert row.last_seen == pytest.approx(max(times).timestamp() * 1000, abs=1)
        if orders:
            last = max(datetime.fromisoformat(o["timestamp"]) for o in orders.values())
            assert row.last_order == pytest.approx(last.timestamp() * 1000, abs=1)
        else:
            assert pd.isna(row.last_order)
        hits = Counter(e["properties"]["category"] for e in events if "category" in e["properties"])
        ranked = sorted(hits, key=lambda c: (-hits[c], c))[:3]
        assert list(row.top_categories) == ranked
        assert row.country == (events[0]["context"].get("country") or "")
        assert set(row.channels) == shoppers.consented[user]


# --- previews = pandas ------------------------------------------------------------------


def _values(profiles: pd.DataFrame, field: str, draw) -> Any:
    spec = FIELDS[field]
    if spec.type in ("number", "count"):
        observed = [float(v) for v in profiles[field]]
        value = draw(st.sampled_from(observed) | st.floats(0, 8000, allow_nan=False))
        return int(value) if spec.type == "count" else value
    if spec.type == "bool":
        return draw(st.booleans())
    if spec.type == "array":
        pool = CATEGORIES if field == "top_categories" else spec.choices
        return draw(st.sampled_from(pool))
    if spec.type == "enum":
        return draw(st.sampled_from(spec.choices))
    if field == "user_key":
        return draw(st.sampled_from(list(profiles.index)))
    return draw(st.sampled_from([*sorted(set(profiles[field])), "DE", "mobile", "x"]))


@st.composite
def conditions(draw, profiles: pd.DataFrame) -> Condition:
    field = draw(st.sampled_from(sorted(FIELDS)))
    spec = FIELDS[field]
    op = draw(st.sampled_from(sorted(OPERATORS[spec.type])))
    if spec.type == "datetime":
        if op in ("inactive_days", "within_days"):
            return Condition(field=field, op=op, value=draw(st.integers(0, 120)))
        offsets = st.integers(0, 120 * 86_400)
        moments = [(NOW - timedelta(seconds=draw(offsets))).isoformat() for _ in range(2)]
        if op == "between":
            return Condition(field=field, op=op, value=sorted(moments))
        return Condition(field=field, op=op, value=moments[0])
    if op in ("in", "not_in"):
        values = [_values(profiles, field, draw) for _ in range(draw(st.integers(1, 3)))]
        if spec.type == "bool":
            values = values[:1]
        return Condition(field=field, op=op, value=values)
    if op == "between":
        low, high = sorted(_values(profiles, field, draw) for _ in range(2))
        return Condition(field=field, op=op, value=[low, high])
    if op == "contains" and spec.type == "string":
        text = _values(profiles, field, draw)
        return Condition(
            field=field, op=op, value=text[: draw(st.integers(1, max(1, len(text))))] or "x"
        )
    return Condition(field=field, op=op, value=_values(profiles, field, draw))


def rules(profiles: pd.DataFrame) -> st.SearchStrategy[Group]:
    leaf = conditions(profiles)
    tree = st.recursive(
        leaf,
        lambda children: st.builds(
            lambda op, rules: Group(op=op, rules=rules),
            st.sampled_from(["AND", "OR"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        max_leaves=6,
    )
    return st.builds(
        lambda op, rules: Group(op=op, rules=rules),
        st.sampled_from(["AND", "OR"]),
        st.lists(tree, min_size=1, max_size=3),
    )


def _to_ms(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


def pandas_filter(frame: pd.DataFrame, rule: Group | Condition) -> pd.Series:
    """The rule's meaning (docs/segments.md), evaluated without ClickHouse."""
    if isinstance(rule, Group):
        masks = [pandas_filter(frame, r) for r in rule.rules]
        out = masks[0]
        for mask in masks[1:]:
            out = (out & mask) if rule.op == "AND" else (out | mask)
        return out
    column, op, value = frame[rule.field], rule.op, rule.value
    kind = FIELDS[rule.field].type
    if kind == "array":
        wanted = {value} if op == "contains" else set(value)
        hit = column.map(lambda items: bool(wanted & set(items)))
        return ~hit if op == "not_in" else hit
    if kind == "bool":
        column = column.astype(bool)
    if kind == "datetime":
        if op == "inactive_days":
            return column.isna() | (column < NOW_MS - value * DAY_MS)
        if op == "within_days":
            return column >= NOW_MS - value * DAY_MS
        value = [_to_ms(v) for v in value] if isinstance(value, list) else _to_ms(value)
    if op == "contains":
        return column.map(lambda text: value in text)
    if op in ("in", "not_in"):
        hit = column.isin(value)
        return ~hit if op == "not_in" else hit
    if op == "between":
        return (column >= value[0]) & (column <= value[1])
    compare = {
        "=": column.__eq__,
        "!=": column.__ne__,
        ">": column.__gt__,
        ">=": column.__ge__,
        "<": column.__lt__,
        "<=": column.__le__,
    }
    return compare[op](value)


@pytest.fixture(scope="module")
def checked() -> Counter:
    return Counter()


def test_rule_previews_equal_a_pandas_filter(clickhouse: Client, profiles: pd.DataFrame):
    sizes: list[int] = []

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rule=rules(profiles))
    def check(rule: Group) -> None:
        # Through the stored form: what the API keeps is what is compiled.
        stored = load_rule(rule.model_dump_json())
        expected = set(profiles.index[pandas_filter(profiles, stored).to_numpy(dtype=bool)])
        assert member_keys(clickhouse, stored, NOW_MS) == expected, stored.model_dump_json()
        sizes.append(len(expected))

    check()
    # The generated rules selected neither always nothing nor always everyone.
    assert len({s for s in sizes if 0 < s < len(profiles)}) > 10, Counter(sizes).most_common(5)


# --- the API ----------------------------------------------------------------------------


def create(api: TestClient, rules: dict, name: str = "test") -> Any:
    return api.post("/v1/segments", json={"name": name, "rules": rules}, headers=ADMIN)


def test_preview_counts_and_masks(api: TestClient, profiles: pd.DataFrame, shoppers: Shoppers):
    rules = {
        "op": "OR",
        "rules": [
            {"field": "total_spend", "op": ">", "value": 500},
            {"field": "channels", "op": "contains", "value": "whatsapp"},
        ],
    }
    response = create(api, rules, "spenders or whatsapp")
    assert response.status_code == 201, response.text
    segment_id = response.json()["segment_id"]
    assert api.get(f"/v1/segments/{segment_id}", headers=ADMIN).json()["rules"] == rules
    preview = api.get(f"/v1/segments/{segment_id}/preview?sample=50", headers=ADMIN)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    expected = pandas_filter(profiles, load_rule(rules))
    assert body["size"] == int(expected.sum())
    assert len(body["sample"]) == min(50, body["size"])
    text = preview.text
    assert not any(phone in text for phone in shoppers.phones.values()), "a phone in clear"
    phones = [p["phone"] for p in body["sample"] if p["phone"]]
    assert phones and all("•" in p for p in phones)
    assert api.get(f"/v1/segments/{segment_id}/preview").status_code == 401
    assert api.get(f"/v1/segments/{'0' * 32}/preview", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    ("rules", "where"),
    [
        ({"op": "AND", "rules": [{"field": "password", "op": "=", "value": "x"}]}, "field"),
        ({"op": "AND", "rules": [{"field": "tier", "op": ">", "value": "vip"}]}, "operator"),
        ({"op": "AND", "rules": [{"field": "orders", "op": "=", "value": "3"}]}, "number"),
        ({"op": "AND", "rules": [{"field": "orders", "op": "=", "value": 2.5}]}, "whole"),
        ({"op": "AND", "rules": [{"field": "tier", "op": "=", "value": "gold"}]}, "one of"),
        ({"op": "AND", "rules": [{"field": "last_seen", "op": ">", "value": "yesterday"}]}, "ISO"),
        ({"op": "AND", "rules": [{"field": "orders", "op": "between", "value": [5, 1]}]}, "low"),
        ({"op": "XOR", "rules": [{"field": "orders", "op": "=", "value": 1}]}, "op"),
        ({"op": "AND", "rules": []}, "rules"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(api: TestClient, rules: dict, where: str):
    response = create(api, rules)
    assert response.status_code == 422, response.text
    assert where in response.text


INJECTIONS = [
    "total_spend) OR 1=1 --",
    "total_spend; DROP TABLE events",
    "user_key`",
    "arrayJoin(range(10))",
]
HOSTILE_VALUES = [
    "x' OR '1'='1",
    "'; DROP TABLE events; --",
    "\\' OR 1=1 --",
    "{p0:String}",
    "x\x00y",
]


@pytest.mark.parametrize("field", INJECTIONS)
def test_injection_through_a_field_is_refused(api: TestClient, field: str):
    response = create(api, {"op": "AND", "rules": [{"field": field, "op": "=", "value": 1}]})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_injection_through_a_value_is_bound(
    api: TestClient, clickhouse: Client, profiles: pd.DataFrame, value: str
):
    events_before = clickhouse.query("SELECT count() FROM events").result_rows[0][0]
    rules = {
        "op": "OR",
        "rules": [
            {"field": "country", "op": "=", "value": value},
            {"field": "user_key", "op": "in", "value": [value, "nobody"]},
            {"field": "top_categories", "op": "contains", "value": value},
            {"field": "device", "op": "contains", "value": value},
        ],
    }
    response = create(api, rules)
    assert response.status_code == 201, response.text
    preview = api.get(f"/v1/segments/{response.json()['segment_id']}/preview", headers=ADMIN)
    assert preview.status_code == 200, preview.text
    assert preview.json()["size"] == 0
    assert clickhouse.query("SELECT count() FROM events").result_rows[0][0] == events_before
    assert len(profiles) == clickhouse.query("SELECT count() FROM profiles").result_rows[0][0]


def test_parse_turns_a_phrase_into_rules_and_names_unknown_words(api: TestClient):
    text = "customers who spent over 5000 but haven't visited in 30 days"
    response = api.post("/v1/segments/parse", json={"text": text}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["rules"] == {
        "op": "AND",
        "rules": [
            {"field": "total_spend", "op": ">", "value": 5000.0},
            {"field": "last_seen", "op": "inactive_days", "value": 30},
        ],
    }
    assert response.json()["source"] == "phrases"
    response = api.post(
        "/v1/segments/parse", json={"text": "tall customers who spent over 50"}, headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["unknown_words"] == ["tall"]


# --- auto-tags --------------------------------------------------------------------------


def test_segments_carry_auto_tags_and_filter_by_them(api: TestClient):
    made = {}
    for name, phrase in [
        ("lapsed big spenders", "customers who spent over 5000 but haven't visited in 30 days"),
        ("lapsed", "customers who haven't visited in 60 days"),
        ("germany", None),
    ]:
        if phrase is None:
            rules = {"op": "AND", "rules": [{"field": "country", "op": "=", "value": "DE"}]}
        else:
            parsed = api.post("/v1/segments/parse", json={"text": phrase}, headers=ADMIN)
            rules = parsed.json()["rules"]
        name = f"{name} {uuid.uuid4().hex[:6]}"
        created = api.post("/v1/segments", json={"name": name, "rules": rules}, headers=ADMIN)
        assert created.status_code == 201, created.text
        made[created.json()["segment_id"]] = created.json()["tags"]
    assert sorted(made.values()) == [["geo"], ["win-back"], ["win-back", "high-value"]]

    def listed(**params: str) -> dict[str, list[str]]:
        response = api.get("/v1/segments", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        return {s["segment_id"]: s["tags"] for s in response.json()["segments"]}

    assert {k: v for k, v in listed().items() if k in made} == made
    win_back = {k for k, v in made.items() if "win-back" in v}
    assert set(listed(tag="win-back")) & set(made) == win_back
    assert all("win-back" in tags for tags in listed(tag="win-back").values())
    assert set(listed(tag="geo", limit="1")) <= {k for k, v in made.items() if "geo" in v}
    unknown = api.get("/v1/segments", params={"tag": "big-spender"}, headers=ADMIN)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["query", "tag"]
