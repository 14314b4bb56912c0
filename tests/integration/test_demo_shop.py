"""The demo shop's backend (``/demo/api/``): orders validated field by field and priced
from the catalog, reported to the collector with the server key; a collector that
refuses is the shopper's clear "not placed"."""

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.collector_server import SERVER_KEY, collector_settings, consume_raw, running_api

NOT_PLACED = "Your order was not placed"


def order(**fields) -> dict:
    body = {
        "checkout_id": str(uuid.uuid4()),
        "anonymous_id": "anon-shop-test",
        "user_id": "shop-test-user",
        "items": [{"product_id": "cam-001", "quantity": 1}],
    }
    body.update(fields)
    return body


@pytest.fixture(scope="module")
def shop(broker: str) -> Iterator[httpx.Client]:
    settings = collector_settings(broker, demo_server_key=SERVER_KEY)
    with running_api(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def errors(response: httpx.Response) -> dict[tuple, str]:
    assert response.status_code == 422, response.text
    return {tuple(e["loc"]): e["msg"] for e in response.json()["detail"]}


def test_an_unknown_product_is_refused_with_its_field_and_reason(shop: httpx.Client):
    response = shop.post(
        "/demo/api/orders", json=order(items=[{"product_id": "nope", "quantity": 1}])
    )
    assert errors(response) == {
        ("body", "items", 0, "product_id"): "Value error, is not a product of this shop"
    }


@pytest.mark.parametrize("quantity", [0, -1, 11, 1_000_000, "2", 1.5])
def test_quantities_are_whole_numbers_from_1_to_10(shop: httpx.Client, quantity):
    body = order(items=[{"product_id": "cam-001", "quantity": quantity}])
    assert ("body", "items", 0, "quantity") in errors(shop.post("/demo/api/orders", json=body))


def test_an_order_is_one_line_per_product_and_not_empty(shop: httpx.Client):
    twice = [{"product_id": "cam-001", "quantity": 1}] * 2
    assert ("body", "items") in errors(shop.post("/demo/api/orders", json=order(items=twice)))
    assert ("body", "items") in errors(shop.post("/demo/api/orders", json=order(items=[])))


def test_a_message_id_is_an_id_not_a_path(shop: httpx.Client):
    body = order(message_id="../tokens/redeem")
    assert ("body", "message_id") in errors(shop.post("/demo/api/orders", json=body))


def test_the_order_goes_to_the_collector_priced_from_the_catalog(shop: httpx.Client, broker: str):
    # The page's price is ignored: the catalog's is the one charged and reported.
    lines = [
        {"product_id": "cam-001", "quantity": 2, "price": 0.01},
        {"product_id": "wat-001", "quantity": 1},
    ]
    body = order(items=lines)
    response = shop.post("/demo/api/orders", json=body)
    assert response.status_code == 200, response.text
    placed = response.json()
    assert placed["total"] == 2 * 899.0 + 329.0 and placed["discount_percent"] == 0
    found = asyncio.run(consume_raw(broker, {body["checkout_id"]}))
    assert len(found) == 1
    event = found[0][2]
    assert event["name"] == "order_placed" and event["from_server"] is True
    assert (event["user_id"], event["anonymous_id"]) == ("shop-test-user", "anon-shop-test")
    props = event["properties"]
    assert props["order_id"] == placed["order_id"]
    assert [(i["product_id"], i["quantity"], i["amount"]) for i in props["items"]] == [
        ("cam-001", 2, 1798.0),
        ("wat-001", 1, 329.0),
    ]
    assert (props["total"], props["currency"]) == (2127.0, "EUR")


def test_a_collector_that_refuses_the_order_means_not_placed(broker: str):
    settings = collector_settings(broker, demo_server_key="sk_not-the-server-key")
    with running_api(settings) as url:
        response = httpx.post(f"{url}/demo/api/orders", json=order(), timeout=30)
    assert response.status_code == 502
    assert response.json()["detail"] == (
        f"{NOT_PLACED}: the order service answered 401. Your cart is kept; please try again."
    )


def test_without_a_server_key_the_shop_says_it_takes_no_orders(broker: str):
    with running_api(collector_settings(broker)) as url:
        response = httpx.post(f"{url}/demo/api/orders", json=order(), timeout=30)
    assert response.status_code == 503
    assert "INTENTFLOW_DEMO_SERVER_KEY is not set" in response.json()["detail"]


def test_the_profile_phone_comes_back_masked_only(shop: httpx.Client):
    response = shop.post(
        "/demo/api/profile", json={"customer_id": "cust-1", "phone": "+447700900123"}
    )
    assert response.json() == {"customer_id": "cust-1", "phone_masked": "+44 ••••••0123"}
    assert "7700900" not in response.text
    bad = shop.post("/demo/api/profile", json={"customer_id": "cust-1", "phone": "07700 900123"})
    assert ("body", "phone") in errors(bad)
