"""Lookalike audiences on the real warehouse, against a trait planted in the shoppers.

The simulated truth: a third of the shoppers have a hidden trait. Those shoppers come
back more often (3-8 visits against 1-5), look at cameras in 60 % of their visits
(others 10 %), are on mobile a bit more (70 % against 50 %), and half of them order
(others one in ten): every signal overlaps. The
segment is "ordered at least once", which says nothing of the trait. Its lookalikes
are non-members, who never ordered, so the model can only rank them by how they
browse: the top of the ranking should hold the trait far above its share among
non-members. The test states that share and the enrichment it requires."""

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from pipeline.sink.rows import EVENTS, event_row
from schemas.events import parse_event
from schemas.keys import hash_api_key
from tests import support
from tests.integration.test_console import csrf_of
from tests.shoppers import event_of

ADMIN_KEY = "ak_lookalikes"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
NOW = datetime.now(UTC).replace(microsecond=0)
SHOPPERS = 900
TRAIT_SHARE = 1 / 3
# The trait's share in the top decile of the ranking, over its share among non-members.
ENRICHMENT = 2.5

api = support.in_process_api(admin_key_hashes=hash_api_key(ADMIN_KEY))


def journeys(seed: int) -> tuple[list[dict], set[str], set[str]]:
    """(events, shoppers with the trait, shoppers who ordered)."""
    rng = random.Random(seed)
    events, traited, buyers = [], set(), set()
    for i in range(SHOPPERS):
        user = f"look-{seed}-{i:04d}"
        trait = rng.random() < TRAIT_SHARE
        if trait:
            traited.add(user)
        visits = rng.randint(3, 8) if trait else rng.randint(1, 5)
        device = "mobile" if rng.random() < (0.7 if trait else 0.5) else "desktop"
        context = {"device": device, "country": rng.choice(["DE", "FR", "IN", "US"])}
        for visit in range(visits):
            at = NOW - timedelta(days=rng.uniform(0, 30), hours=visit)
            session = f"s-{user}-{visit}"
            cameras = rng.random() < (0.6 if trait else 0.1)
            category = "cameras" if cameras else rng.choice(["shoes", "bags", "books", "toys"])
            page = {"url": "https://shop.example/"}
            events.append(event_of("page_view", user, at, session, **context, properties=page))
            product = {"product_id": f"{category}-1", "category": category, "price": 50.0}
            events.append(
                event_of("product_view", user, at, session, **context, properties=product)
            )
        if rng.random() < (0.5 if trait else 0.1):
            buyers.add(user)
            order = {
                "order_id": f"o-{user}",
                "total": 120.0,
                "currency": "EUR",
                "items": [{"product_id": "x-1", "quantity": 1, "amount": 120.0}],
            }
            events.append(event_of("order_placed", user, at, session, **context, properties=order))
    return events, traited, buyers


@pytest.fixture(scope="module")
def planted(clickhouse: Client) -> tuple[set[str], set[str]]:
    events, traited, buyers = journeys(seed=11)
    rows = [event_row(parse_event(e, received_at=NOW)) for e in events]
    clickhouse.insert(
        EVENTS.name, list(zip(*rows, strict=True)), EVENTS.columns, column_oriented=True
    )
    return traited, buyers


def buyers_segment(api: TestClient) -> str:
    rules = {"op": "AND", "rules": [{"field": "orders", "op": ">=", "value": 1}]}
    created = api.post("/v1/segments", json={"name": "buyers", "rules": rules}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["segment_id"]


def test_the_top_decile_of_lookalikes_is_enriched_for_the_planted_trait(
    api: TestClient, planted: tuple[set[str], set[str]]
):
    traited, buyers = planted
    segment_id = buyers_segment(api)
    outside = SHOPPERS - len(buyers)
    decile = outside // 10
    asked = api.post(f"/v1/segments/{segment_id}/lookalike", json={"size": decile}, headers=ADMIN)
    assert asked.status_code == 200, asked.text
    found = asked.json()
    assert (found["members"], found["candidates"]) == (len(buyers), outside)
    (condition,) = found["rules"]["rules"]
    ranked = condition["value"]
    assert condition["field"] == "user_key" and condition["op"] == "in"
    assert len(ranked) == len(set(ranked)) == decile
    assert not set(ranked) & buyers, "lookalikes are outside the segment"

    base = len(traited - buyers) / outside
    top = len(set(ranked) & traited) / decile
    print(f"trait among non-members {base:.2f}, in the top decile {top:.2f}")
    assert top >= ENRICHMENT * base, (top, base)
    scores = [p["score"] for p in found["sample"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == min(20, decile)
    # The same data give the same ranking.
    again = api.post(f"/v1/segments/{segment_id}/lookalike", json={"size": decile}, headers=ADMIN)
    assert again.json()["rules"] == found["rules"]


def test_saved_lookalikes_are_a_segment_of_that_size(
    api: TestClient, planted: tuple[set[str], set[str]]
):
    segment_id = buyers_segment(api)
    body = {"size": 50, "save": True, "name": "like our buyers"}
    saved = api.post(f"/v1/segments/{segment_id}/lookalike", json=body, headers=ADMIN).json()
    assert saved["saved"]["name"] == "like our buyers"
    assert saved["saved"]["rules"] == saved["rules"]
    preview = api.get(f"/v1/segments/{saved['saved']['segment_id']}/preview", headers=ADMIN)
    assert preview.status_code == 200, preview.text
    assert preview.json()["size"] == 50


def test_a_segment_too_small_to_learn_from_is_refused_with_the_reason(
    api: TestClient, planted: tuple[set[str], set[str]]
):
    rules = {"op": "AND", "rules": [{"field": "user_key", "op": "=", "value": "look-11-0000"}]}
    one = api.post("/v1/segments", json={"name": "one", "rules": rules}, headers=ADMIN).json()
    refused = api.post(f"/v1/segments/{one['segment_id']}/lookalike", json={}, headers=ADMIN)
    assert refused.status_code == 422
    assert "at least 10 members" in refused.json()["detail"]
    for body in ({"size": 0}, {"size": 1001}):
        bad = api.post(f"/v1/segments/{one['segment_id']}/lookalike", json=body, headers=ADMIN)
        assert bad.status_code == 422
    missing = api.post(f"/v1/segments/{'0' * 32}/lookalike", json={}, headers=ADMIN)
    assert missing.status_code == 404


def test_the_console_previews_lookalikes_then_saves_them_as_a_segment(
    api: TestClient, planted: tuple[set[str], set[str]]
):
    segment_id = buyers_segment(api)
    expected = api.post(f"/v1/segments/{segment_id}/lookalike", json={"size": 40}, headers=ADMIN)
    form = api.get("/console/signin")
    key = {"csrf": csrf_of(form.text), "key": ADMIN_KEY}
    signed = api.post("/console/signin", data=key, follow_redirects=False)
    assert signed.status_code == 303, signed.text[:300]
    listed = api.get("/console/segments")
    action = f"/console/segments/{segment_id}/lookalike"
    assert f'action="{action}"' in listed.text
    csrf = csrf_of(listed.text)

    preview = api.post(action, data={"csrf": csrf, "size": "40"})
    assert preview.status_code == 200, preview.text[:500]
    found = expected.json()
    assert f'<strong id="lookalike-auc">{found["auc"]:.2f}</strong>' in preview.text
    shown = re.findall(r"<tr><td>([^<]+)</td><td>([\d.]+)</td></tr>", preview.text)
    assert shown == [(p["user"], f"{p['score']:.3f}") for p in found["sample"]]
    assert len(shown) == 20, "the API's sample, shown as the API masks it"
    before = api.get("/v1/segments", headers=ADMIN).json()["segments"]

    save = {"csrf": csrf, "size": "40", "save": "1", "name": "like them"}
    saved = api.post(action, data=save, follow_redirects=False)
    assert saved.status_code == 303, saved.text[:500]
    after = api.get("/v1/segments", headers=ADMIN).json()["segments"]
    (new,) = [s for s in after if s["segment_id"] not in {b["segment_id"] for b in before}]
    assert saved.headers["location"] == f"/console/segments?saved={new['segment_id']}"
    assert (new["name"], new["rules"]) == ("like them", found["rules"])

    # A segment too small to learn from goes back to the list with the API's reason.
    rules = {"op": "AND", "rules": [{"field": "user_key", "op": "=", "value": "look-11-0000"}]}
    one = api.post("/v1/segments", json={"name": "one", "rules": rules}, headers=ADMIN).json()
    small = f"/console/segments/{one['segment_id']}/lookalike"
    refused = api.post(small, data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"] == "/console/segments"
    assert "at least 10 members" in api.get("/console/segments").text
    api.cookies.clear()
