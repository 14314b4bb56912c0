"""/segment/v1 against a real broker, driven by the real Segment and RudderStack Python SDKs.

The SDKs are used unmodified, pointed at ``<API>/segment``; what they send must
land on ``telemetry.raw`` as events of our contract (schemas/segment.py).
"""

import asyncio
import base64
import gzip
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from segment.analytics import request as segment_request

from pipeline.local.ports import free_port
from schemas.segment import MESSAGE_ID_NAMESPACE
from tests.collector_server import (
    READ_KEY,
    SERVER_KEY,
    WRITE_KEY,
    collector_settings,
    consume_raw,
    running_api,
)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def segment_client(api: str, key: str = WRITE_KEY, **options: Any) -> SegmentClient:
    return SegmentClient(key, host=f"{api}/segment", sync_mode=True, max_retries=0, **options)


def records_by_id(broker: str, ids: set[str], timeout_s: float = 20.0) -> dict[str, dict]:
    found = asyncio.run(consume_raw(broker, ids, timeout_s))
    return {value["event_id"]: value for _, _, value in found}


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


# --- the SDKs ----------------------------------------------------------------------


def test_segment_sdk_ecommerce_calls_arrive_as_our_events(api: str, broker: str):
    client = segment_client(api)
    anon, user = f"anon-{uuid.uuid4()}", f"seg-{uuid.uuid4().hex[:8]}"
    m = ids(9)
    product = {
        "product_id": "p-7",
        "sku": "SKU-7",
        "name": "Trail shoe",
        "price": 89.5,
        "image_url": "https://shop.example/p7.jpg",
        "url": "https://shop.example/p/7",
        "category": "shoes",
    }
    context = {
        "page": {"url": "https://shop.example/p/7", "title": "Trail shoe"},
        "userAgent": "Mozilla/5.0",
        "campaign": {"source": "whatsapp", "medium": "message", "message_id": "msg-1"},
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "location": {"country": "DE"},
        "device": {"type": "ios"},
    }
    client.page(
        anonymous_id=anon, name="Trail shoe", properties={"url": product["url"]}, message_id=m[0]
    )
    client.track(
        anonymous_id=anon,
        event="Product Viewed",
        properties=product,
        context=context,
        message_id=m[1],
    )
    client.track(
        anonymous_id=anon,
        event="Product Added",
        properties={**product, "quantity": 2},
        message_id=m[2],
    )
    client.track(anonymous_id=anon, event="Product Removed", properties=product, message_id=m[3])
    client.track(
        anonymous_id=anon, event="Products Searched", properties={"query": "trail"}, message_id=m[4]
    )
    client.track(
        anonymous_id=anon, event="Cart Viewed", properties={"cart_id": "c1"}, message_id=m[5]
    )
    client.track(
        anonymous_id=anon, event="Checkout Started", properties={"revenue": 89.5}, message_id=m[6]
    )
    client.identify(
        user,
        traits={"plan": "plus", "email": "shopper@example.com"},
        anonymous_id=anon,
        message_id=m[7],
    )
    client.screen(user_id=user, name="Home", message_id=m[8])

    got = records_by_id(broker, set(m))
    assert set(got) == set(m)
    names = [got[i]["name"] for i in m]
    assert names == [
        "page_view",
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "search",
        "cart_viewed",
        "checkout_started",
        "identify",
        "screen_view",
    ]
    assert got[m[0]]["properties"] == {"url": product["url"], "page_name": "Trail shoe"}
    viewed = got[m[1]]
    # The catalog's fields stay in the properties.
    assert viewed["properties"] == product
    assert viewed["anonymous_id"] == anon
    assert viewed["context"] == {
        "page": {"url": "https://shop.example/p/7", "title": "Trail shoe"},
        "user_agent": "Mozilla/5.0",
        "campaign": {"source": "whatsapp", "medium": "message", "utm_message_id": "msg-1"},
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "device": "mobile",
        "country": "DE",
    }
    assert got[m[2]]["properties"]["quantity"] == 2
    assert got[m[3]]["properties"]["quantity"] == 1  # the spec's default
    assert got[m[4]]["properties"] == {"query": "trail"}
    identify = got[m[7]]
    assert (identify["user_id"], identify["anonymous_id"]) == (user, anon)
    traits = identify["properties"]["traits"]
    assert traits["plan"] == "plus"
    assert "email" not in traits and traits["email_masked"].endswith("@example.com")
    assert got[m[8]]["properties"] == {"screen_name": "Home"}
    assert got[m[8]]["anonymous_id"] == user  # a backend's message names only the user


def test_rudderstack_sdk_sends_gzip_batches_that_arrive(api: str, broker: str):
    sent: list[str] = []
    errors: list[Exception] = []
    # Queued and flushed by the SDK's consumer thread, gzip on (its default).
    client = RudderClient(
        WRITE_KEY, host=f"{api}/segment", on_error=lambda e, batch: errors.append(e)
    )
    assert client.gzip is True
    anon = f"anon-{uuid.uuid4()}"
    for n in range(30):
        message_id = str(uuid.uuid4())
        sent.append(message_id)
        client.track(
            anonymous_id=anon,
            event="Product Viewed",
            properties={"product_id": f"p-{n}", "price": n},
            message_id=message_id,
        )
    client.alias(previous_id=anon, user_id="rudder-user", message_id=(alias_id := ids(1)[0]))
    client.flush()
    client.join()
    assert errors == []
    got = records_by_id(broker, {*sent, alias_id})
    assert set(got) == {*sent, alias_id}
    assert {got[i]["name"] for i in sent} == {"product_view"}
    alias = got[alias_id]
    assert (alias["name"], alias["anonymous_id"], alias["user_id"]) == (
        "identify",
        anon,
        "rudder-user",
    )


def test_an_order_needs_the_server_key(api: str, broker: str):
    order = {
        "order_id": "o-seg-1",
        "total": 107.99,
        "currency": "eur",
        "products": [{"product_id": "p-1", "quantity": 2, "price": 45.0, "name": "Mug"}],
    }
    # Through the SDK (a batch of one): reported in the 200, not produced.
    refused_id = ids(1)[0]
    segment_client(api).track(
        user_id="u-ord", event="Order Completed", properties=order, message_id=refused_id
    )
    # A single call: Segment's 400, which the SDK raises with our reason.
    single = {"type": "track", "userId": "u-ord", "event": "Order Completed", "properties": order}
    answer = httpx.post(f"{api}/segment/v1/track", json=single, headers=basic(WRITE_KEY))
    assert answer.status_code == 400 and "server key" in answer.json()["message"]

    message_id = ids(1)[0]
    segment_client(api, SERVER_KEY).track(
        user_id="u-ord", event="Order Completed", properties=order, message_id=message_id
    )
    got = records_by_id(broker, {message_id, refused_id}, timeout_s=5)
    assert refused_id not in got
    placed = got[message_id]
    assert placed["name"] == "order_placed"
    assert placed["properties"] == {
        "order_id": "o-seg-1",
        "total": 107.99,
        "currency": "EUR",
        "items": [
            {"product_id": "p-1", "quantity": 2, "amount": 90.0, "tax": 0.0, "discount": 0.0}
        ],
    }
    assert "ip" not in placed  # a backend's address says nothing about the shopper


# --- the wire --------------------------------------------------------------------------


def batch_of(*messages: dict, **top: Any) -> dict:
    return {"batch": list(messages), "sentAt": datetime.now(UTC).isoformat(), **top}


def track(event: str = "Product Viewed", **fields: Any) -> dict:
    return {
        "type": "track",
        "event": event,
        "anonymousId": "anon-wire",
        "properties": {"product_id": "p-1"},
        "messageId": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        **fields,
    }


def test_a_resent_batch_keeps_its_event_ids(http: httpx.Client, broker: str):
    """Our event ids are the dedup keys downstream: a retry must carry the same ones."""
    messages = [track(), track(messageId="ajs-next-1f2e3d"), track(messageId=None)]
    body = batch_of(*messages)
    first = http.post("/segment/v1/batch", json=body, headers=basic(WRITE_KEY))
    body["sentAt"] = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()  # a resend
    second = http.post("/segment/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"success": True, "accepted": 3}

    expected = messages[0]["messageId"]
    found = asyncio.run(consume_raw(broker, {expected}, 10))
    assert len(found) == 2 and {v["event_id"] for _, _, v in found} == {expected}
    # A non-UUID messageId maps to the same uuid5 every time.
    from schemas.keys import hash_api_key

    derived = str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{hash_api_key(WRITE_KEY)}\x00ajs-next-1f2e3d"))
    assert len(asyncio.run(consume_raw(broker, {derived}, 10))) == 2


def test_batch_context_and_integrations_merge_into_each_message(http: httpx.Client, broker):
    kept, off = track(context={"locale": "fr-FR"}), track(integrations={"intentflow": False})
    body = batch_of(
        kept,
        off,
        context={"timezone": "Europe/Paris", "locale": "en-GB", "userAgent": "batch-agent"},
        integrations={"All": True},
    )
    answer = http.post("/segment/v1/batch", json=body, headers=basic(WRITE_KEY)).json()
    assert answer["accepted"] == 1
    assert answer["skipped"] == [
        {"index": 1, "messageId": off["messageId"], "reason": answer["skipped"][0]["reason"]}
    ]
    got = records_by_id(broker, {kept["messageId"]})[kept["messageId"]]
    assert got["context"] == {
        "locale": "fr-FR",  # the message's own wins
        "timezone": "Europe/Paris",
        "user_agent": "batch-agent",
    }


def test_the_event_time_is_corrected_for_the_client_clock(http: httpx.Client, broker):
    # The client's clock is an hour fast: it stamped the event 10 s before sending.
    client_now = datetime.now(UTC) + timedelta(hours=1)
    message = track(timestamp=(client_now - timedelta(seconds=10)).isoformat())
    body = batch_of(message, sentAt=client_now.isoformat())
    assert http.post("/segment/v1/batch", json=body, headers=basic(WRITE_KEY)).status_code == 200
    got = records_by_id(broker, {message["messageId"]})[message["messageId"]]
    stamped = datetime.fromisoformat(got["timestamp"])
    received = datetime.fromisoformat(got["received_at"])
    assert abs((received - stamped) - timedelta(seconds=10)) < timedelta(seconds=1)


def test_gzip_bodies_and_a_gzip_bomb(http: httpx.Client, broker: str):
    message = track()
    packed = gzip.compress(orjson.dumps(batch_of(message)))
    headers = {**basic(WRITE_KEY), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert http.post("/segment/v1/batch", content=packed, headers=headers).status_code == 200
    assert message["messageId"] in records_by_id(broker, {message["messageId"]})

    bomb = gzip.compress(b'{"batch": [' + b" " * (200 << 20) + b"]}", compresslevel=9)
    assert len(bomb) < 1 << 20  # 200 MiB of JSON in well under the 1 MiB cap
    started = time.process_time()
    response = http.post("/segment/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 400 and "500 KB" in response.json()["message"]
    assert time.process_time() - started < 1.0  # inflated no further than 500 KB

    broken = http.post("/segment/v1/batch", content=packed[:-9], headers=headers)
    assert broken.status_code == 400 and "gzip" in broken.json()["message"]


def test_segment_size_limits_are_400_with_the_reason(http: httpx.Client, broker: str):
    big = track(properties={"product_id": "p", "pad": "x" * 33_000})
    single = http.post("/segment/v1/track", json=big, headers=basic(WRITE_KEY))
    assert single.status_code == 400 and "32 KB" in single.json()["message"]
    # In a batch, the big message is reported and the others kept.
    ok = track()
    answer = http.post("/segment/v1/batch", json=batch_of(big, ok), headers=basic(WRITE_KEY))
    assert answer.status_code == 200
    (rejected,) = answer.json()["rejected"]
    assert rejected["index"] == 0 and "32 KB" in rejected["errors"][0]["msg"]
    whole = batch_of(*[track(properties={"product_id": "p", "pad": "y" * 20_000})] * 30)
    too_big = http.post("/segment/v1/batch", json=whole, headers=basic(WRITE_KEY))
    assert too_big.status_code == 400 and "500 KB" in too_big.json()["message"]


def test_malformed_messages_are_reported_and_the_valid_ones_kept(http: httpx.Client, broker):
    good = track()
    batch = [
        good,
        "not an object",
        {"type": "track", "anonymousId": "a"},  # no event name
        {"type": "shout", "anonymousId": "a"},
        track(anonymousId=None),  # neither anonymousId nor userId
        track("Product Added", properties={"product_id": "p"}),  # no price
        track(timestamp="yesterday"),
        {"type": "identify", "anonymousId": "a", "traits": {"x": 1}},  # no userId
        track("!!!"),
    ]
    response = http.post("/segment/v1/batch", json=batch_of(*batch), headers=basic(WRITE_KEY))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["accepted"] == 1
    reasons = {r["index"]: r["errors"] for r in body["rejected"]}
    assert set(reasons) == set(range(1, len(batch)))
    assert reasons[5][0]["loc"] == ["properties", "price"]
    assert reasons[6][0]["loc"] == ["timestamp"]
    assert good["messageId"] in records_by_id(broker, {good["messageId"]})


# --- keys, statuses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, basic("wk_wrong"), basic(READ_KEY), {"Authorization": "Basic %%%"}],
    ids=["missing", "unknown", "read-key", "malformed"],
)
def test_401_without_a_write_or_server_key(http: httpx.Client, headers: dict[str, str]):
    response = http.post("/segment/v1/batch", json=batch_of(track()), headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"  # the SDKs read code and message


def test_the_key_may_travel_in_the_body(http: httpx.Client):
    ok = http.post("/segment/v1/batch", json=batch_of(track(), writeKey=WRITE_KEY))
    assert ok.json() == {"success": True, "accepted": 1}
    wrong = http.post("/segment/v1/track", json={**track(), "writeKey": "wk_nope"})
    assert wrong.status_code == 401


def test_analytics_js_paths_and_text_plain(http: httpx.Client):
    body = orjson.dumps({**track(), "writeKey": WRITE_KEY})
    plain = {"Content-Type": "text/plain"}
    assert http.post("/segment/v1/t", content=body, headers=plain).status_code == 200
    batch = orjson.dumps(batch_of(track(), writeKey=WRITE_KEY))
    assert http.post("/segment/v1/b", content=batch, headers=plain).status_code == 200


def test_429_with_retry_after_under_the_rate_limit(broker: str):
    settings = collector_settings(broker, rate_limit_events_per_s=1.0, rate_limit_burst=5)
    with running_api(settings) as url:
        body = batch_of(*[track() for _ in range(5)])
        first = httpx.post(f"{url}/segment/v1/batch", json=body, headers=basic(WRITE_KEY))
        second = httpx.post(f"{url}/segment/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert first.status_code == 200
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert second.json()["code"] == "rate_limited"


def test_503_with_retry_after_when_the_broker_is_down():
    settings = collector_settings(f"127.0.0.1:{free_port()}", produce_timeout_s=1.0)
    with running_api(settings) as url:
        response = httpx.post(
            f"{url}/segment/v1/batch", json=batch_of(track()), headers=basic(WRITE_KEY), timeout=30
        )
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["code"] == "unavailable"


def test_the_sdk_waits_out_a_429_and_resends(broker: str):
    """analytics-python honours our Retry-After: the refused batch arrives on its resend."""
    settings = collector_settings(broker, rate_limit_events_per_s=2.0, rate_limit_burst=4)
    errors: list[Exception] = []
    statuses: list[int] = []
    # Watch the answers on the SDK's own HTTP session (its code is not touched).
    hooks = segment_request._session.hooks["response"]
    hooks.append(lambda response, *args, **kwargs: statuses.append(response.status_code))
    with running_api(settings) as url:
        client = SegmentClient(
            WRITE_KEY,
            host=f"{url}/segment",
            upload_size=4,
            on_error=lambda e, batch: errors.append(e),
        )
        sent = ids(8)
        for message_id in sent:  # two batches of 4: the second is over the burst
            client.track(anonymous_id="anon-429", event="Signed Up", message_id=message_id)
        client.flush()
        client.join()
    hooks.pop()
    assert errors == []
    assert 429 in statuses and statuses[-1] == 200, statuses
    found = asyncio.run(consume_raw(broker, set(sent)))
    assert sorted(v["event_id"] for _, _, v in found) == sorted(sent)
