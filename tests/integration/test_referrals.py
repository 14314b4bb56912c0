"""Referral links on the real warehouse: a shopper's link, where it lands, and the
referral funnel checked against the same journeys counted in Python.

The journeys are events as the sink writes them (pipeline/sink/rows.py), with the
UTM tags the landing gives (schemas/referrals.py): new visitors who sign up and buy,
an order re-delivered, an order before the visit, an existing customer, the referrer
following their own link, a code nobody was given, a visit outside the range."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.privacy.erasure import erase_warehouse
from pipeline.sink.rows import EVENTS, event_row
from schemas import pii
from schemas.events import parse_event
from schemas.keys import hash_api_key
from tests import support
from tests.integration.test_console import csrf_of

ADMIN_KEY, SERVER_KEY, READ_KEY = "ak_referrals", "sk_referrals", "rk_referrals"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
SHOP = "https://shop.example"
T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # the data's time; no clock is read
SPAN = {"from": T0.isoformat(), "to": (T0 + timedelta(days=7)).isoformat()}

api = support.in_process_api(
    admin_key_hashes=hash_api_key(ADMIN_KEY),
    server_key_hashes=hash_api_key(SERVER_KEY),
    read_key_hashes=hash_api_key(READ_KEY),
    storefront_url=SHOP,
    public_api_url="https://api.example",
)


def link_for(api: TestClient, referrer: str, headers: dict = ADMIN) -> str:
    response = api.post("/v1/referrals", json={"user_id": referrer}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["code"]


def test_a_shopper_gets_one_link_that_lands_on_the_storefront_tagged(api: TestClient):
    referrer = f"ref-{uuid.uuid4().hex[:8]}"
    first = api.post("/v1/referrals", json={"user_id": referrer}, headers=SERVER)
    assert first.status_code == 201, first.text
    again = api.post("/v1/referrals", json={"user_id": referrer}, headers=ADMIN).json()
    assert again == first.json()  # the referrer's own link, however often asked
    code = again["code"]
    assert again["url"] == f"https://api.example/v1/ref/{code}"
    assert referrer not in again["url"]  # the link does not name the referrer
    assert link_for(api, referrer + "x") != code
    for headers in ({}, READ, {"Authorization": "Bearer nope"}):
        refused = api.post("/v1/referrals", json={"user_id": referrer}, headers=headers)
        assert refused.status_code == 401, refused.text
    assert api.post("/v1/referrals", json={"user_id": ""}, headers=ADMIN).status_code == 422

    landed = api.get(f"/v1/ref/{code}", follow_redirects=False)
    assert landed.status_code == 302
    target = urlsplit(landed.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == SHOP
    assert parse_qs(target.query) == {
        "utm_source": ["referral"],
        "utm_medium": ["link"],
        "utm_campaign": [code],
    }
    for bad in ("UPPERCASE123", "short", "a" * 13, "../../evil.ex"):
        assert api.get(f"/v1/ref/{bad}", follow_redirects=False).status_code in (404, 422)


def event(name: str, at: datetime, anon: str, user: str | None = None, **props: Any) -> dict:
    raw: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": at.isoformat(),
        "anonymous_id": anon,
        "properties": props,
    }
    if user is not None:
        raw["user_id"] = user
    return raw


def visit(at: datetime, anon: str, code: str) -> dict:
    raw = event("page_view", at, anon, url=f"{SHOP}/?utm_campaign={code}")
    raw["context"] = {"campaign": {"source": "referral", "medium": "link", "name": code}}
    return raw


def order(at: datetime, anon: str, user: str | None, order_id: str, total: float) -> dict:
    line = {"product_id": "p-1", "quantity": 1, "amount": total}
    return event(
        "order_placed",
        at,
        anon,
        user,
        order_id=order_id,
        total=total,
        currency="EUR",
        items=[line],
    )


def test_the_funnel_counts_new_customers_per_link_as_python_does(
    api: TestClient, clickhouse: Client
):
    rng = random.Random(7)
    tag = uuid.uuid4().hex[:6]
    referrers = [f"ref-{tag}-{n}" for n in range(3)]
    codes = {r: link_for(api, r) for r in referrers}
    raws: list[dict] = []
    expected = {
        code: {"visitors": 0, "signed_up": 0, "buyers": 0, "orders": 0, "revenue": 0.0}
        for code in codes.values()
    }
    for n in range(60):
        referrer = rng.choice(referrers)
        code, anon, user = codes[referrer], f"anon-{tag}-{n}", f"new-{tag}-{n}"
        at = T0 + timedelta(hours=rng.uniform(1, 100))
        shape = rng.choice(["browse", "sign_up", "buy_anonymous", "buy", "buy_twice", "existing"])
        if shape == "existing":  # identified before the visit: not a new customer
            raws += [event("identify", at - timedelta(days=1), anon, user), visit(at, anon, code)]
            raws.append(order(at + timedelta(minutes=5), anon, user, f"o-{tag}-{n}", 50.0))
            continue
        raws.append(visit(at, anon, code))
        raws.append(visit(at + timedelta(minutes=1), anon, code))  # a second page, same visit
        counted = expected[code]
        counted["visitors"] += 1
        # An order from before the visit is not the referral's.
        raws.append(order(at - timedelta(hours=2), anon, None, f"before-{tag}-{n}", 9.0))
        if shape == "buy_anonymous":
            total = round(rng.uniform(10, 200), 2)
            raws.append(order(at + timedelta(minutes=3), anon, None, f"o-{tag}-{n}", total))
            counted["buyers"] += 1
            counted["orders"] += 1
            counted["revenue"] += total
        if shape in ("sign_up", "buy", "buy_twice"):
            raws.append(event("identify", at + timedelta(minutes=2), anon, user))
            counted["signed_up"] += 1
        if shape in ("buy", "buy_twice"):
            count = 2 if shape == "buy_twice" else 1
            counted["buyers"] += 1
            for k in range(count):
                total = round(rng.uniform(10, 200), 2)
                placed = order(
                    at + timedelta(minutes=10 + k), f"device-{n}", user, f"o-{tag}-{n}-{k}", total
                )
                raws += [placed, {**placed}]  # re-delivered: the same order once
                counted["orders"] += 1
                counted["revenue"] += total
    # The referrer following their own link, then buying: not a referral.
    own = referrers[0]
    raws += [visit(T0 + timedelta(hours=5), f"anon-own-{tag}", codes[own])]
    raws += [event("identify", T0 + timedelta(hours=5, minutes=1), f"anon-own-{tag}", own)]
    raws += [order(T0 + timedelta(hours=5, minutes=2), f"anon-own-{tag}", own, f"own-{tag}", 99.0)]
    # A code nobody was given, and a visit before the range: nothing.
    raws += [visit(T0 + timedelta(hours=3), f"anon-forged-{tag}", "abcdefghijkl")]
    raws += [visit(T0 - timedelta(days=1), f"anon-early-{tag}", codes[referrers[1]])]
    rows = [
        event_row(parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"])))
        for raw in raws
    ]
    clickhouse.insert(
        EVENTS.name, list(zip(*rows, strict=True)), EVENTS.columns, column_oriented=True
    )

    def funnel() -> dict[str, dict]:
        response = api.get("/v1/metrics/referrals", params=SPAN, headers=READ)
        assert response.status_code == 200, response.text
        return {r["code"]: r for r in response.json()["rows"] if r["code"] in expected}

    found = funnel()
    assert {code: found[code]["referrer"] for code in found} == {
        codes[r]: r for r in referrers if expected[codes[r]]["visitors"]
    }
    for code, counted in expected.items():
        if not counted["visitors"]:
            assert code not in found
            continue
        row = found[code]
        got = {k: row[k] for k in ("visitors", "signed_up", "buyers", "orders")}
        assert got == {k: counted[k] for k in got}, code
        assert row["revenue"] == pytest.approx(counted["revenue"]), code

    # Erasing a referrer takes their link's row with them: it attributes nothing more.
    erased = referrers[1]
    report = erase_warehouse(clickhouse, erased, pii.MasterKey.from_secret("test-pii-master-key"))
    assert report.rows.get("referral_links", 0) >= 1, report
    assert codes[erased] not in funnel()


def test_an_operator_gets_a_shoppers_link_from_the_console(api: TestClient, clickhouse: Client):
    referrer = f"ref-{uuid.uuid4().hex[:8]}"
    raw = event("page_view", T0, f"anon-{referrer}", referrer, url=f"{SHOP}/")
    seen = parse_event(raw, received_at=T0)
    rows = [event_row(seen)]
    clickhouse.insert(
        EVENTS.name, list(zip(*rows, strict=True)), EVENTS.columns, column_oriented=True
    )
    form = api.get("/console/signin")
    key = {"csrf": csrf_of(form.text), "key": ADMIN_KEY}
    assert api.post("/console/signin", data=key, follow_redirects=False).status_code == 303
    shopper = api.get(f"/console/shoppers/{referrer}")
    action = f"/console/shoppers/{referrer}/referral"
    assert shopper.status_code == 200 and f'action="{action}"' in shopper.text
    made = api.post(action, data={"csrf": csrf_of(shopper.text)}, follow_redirects=False)
    assert made.status_code == 303, made.text[:300]
    assert made.headers["location"] == f"/console/shoppers/{referrer}"
    shown = api.get(made.headers["location"]).text
    url = f"https://api.example/v1/ref/{link_for(api, referrer)}"  # the API's, asked again
    assert f"Referral link for this shopper (the same each time): {url}" in shown
    # A read-only session sees the shopper but cannot make links.
    api.cookies.clear()
    form = api.get("/console/signin")
    key = {"csrf": csrf_of(form.text), "key": READ_KEY}
    assert api.post("/console/signin", data=key, follow_redirects=False).status_code == 303
    token = csrf_of(api.get(f"/console/shoppers/{referrer}").text)
    refused = api.post(action, data={"csrf": token}, follow_redirects=False)
    assert refused.status_code == 403 and "admin key" in refused.text, refused.text[:300]
    api.cookies.clear()
