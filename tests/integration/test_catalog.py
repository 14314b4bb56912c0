"""The catalog and tracked links on the real parts: products upserted by a storefront (server
key only, refused field by field), the demo shop's catalog loaded and pictured, and a click
on a message's link recorded as a ``clicked`` receipt on the topic before the shopper lands."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from clickhouse_connect.driver.client import Client

from api.queries.attribution import attributed_orders
from api.queries.common import TimeRange
from api.queries.nudges import nudge_outcomes
from api.routes.links import click_receipt
from pipeline.dispatch.catalog import Catalog
from pipeline.domain.rules import Templates
from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.demo_catalog import load_demo_catalog
from pipeline.local.ports import LOOPBACK, free_port
from pipeline.sink.batch import SinkBatch
from pipeline.sink.processors import process_event, process_receipt
from pipeline.sink.writer import WarehouseWriter
from schemas.events import parse_event
from schemas.keys import hash_api_key
from schemas.links import Link, link_token
from schemas.templates import Tracking, render
from schemas.topics import RECEIPTS
from tests.collector_server import (
    SERVER_KEY,
    WRITE_KEY,
    collector_settings,
    running_api,
)

LINK_SECRET = "catalog-test-link-secret"
SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
ADMIN_KEY = "ak_catalog-test-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def api(broker: str, warehouse: str, clickhouse: Client):
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    settings = collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        link_secret=LINK_SECRET,
        public_api_url=url,
        storefront_url=f"{url}/demo",
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
    )
    with running_api(settings, port) as running:
        assert running == url
        yield url


def product(pid: str, **fields) -> dict:
    return {
        "product_id": pid,
        "name": "Trail Shoe",
        "price": 120.0,
        "currency": "EUR",
        "image_url": "https://cdn.example/shoe.png",
        "url": "https://shop.example/p/shoe",
        "category": "shoes",
        **fields,
    }


def test_a_server_key_upserts_products_and_the_newest_entry_wins(api: str, clickhouse: Client):
    pid = f"shoe-{uuid.uuid4().hex[:6]}"
    first = httpx.put(f"{api}/v1/products", json={"products": [product(pid)]}, headers=SERVER)
    assert first.status_code == 200, first.text
    assert first.json()["upserted"] == 1
    renamed = product(pid, name="Trail Shoe 2", price=99.5, image_url=None)
    second = httpx.put(f"{api}/v1/products", json={"products": [renamed]}, headers=SERVER)
    assert second.status_code == 200, second.text
    got = httpx.get(f"{api}/v1/products/{pid}", headers=SERVER)
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["name"], body["price"], body["image_url"]) == ("Trail Shoe 2", 99.5, None)
    assert body["updated_at_ms"] == second.json()["updated_at_ms"]
    # The dispatcher's lookup reads the same newest entry, in one query for many ids.
    found = Catalog(clickhouse).products([pid, "no-such-product", None])
    assert set(found) == {pid} and found[pid].name == "Trail Shoe 2"
    assert httpx.get(f"{api}/v1/products/no-such-product", headers=SERVER).status_code == 404


def test_a_write_key_cannot_touch_the_catalog(api: str):
    write = {"Authorization": f"Bearer {WRITE_KEY}"}
    answer = httpx.put(f"{api}/v1/products", json={"products": [product("x")]}, headers=write)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"image_url": "javascript:alert(1)"}, "image_url", "http or https"),
        ({"url": "ftp://shop.example/p"}, "url", "http or https"),
        ({"url": "https://" + "a" * 3000}, "url", "2048"),
        ({"name": ""}, "name", "at least 1"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"price": -1}, "price", "greater than or equal"),
        ({"currency": "euro"}, "currency", "pattern"),
        ({"product_id": "a\nb"}, "product_id", "pattern"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_a_bad_entry_is_refused_with_its_field_and_reason(api, fields, field, reason):
    good = product(f"good-{uuid.uuid4().hex[:6]}")
    body = {"products": [good, product("bad", **fields)]}
    answer = httpx.put(f"{api}/v1/products", json=body, headers=SERVER)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"][:3] == ["body", "products", 1] and error["loc"][-1] == field
    assert reason in error["msg"]
    # Nothing of the batch was written.
    assert httpx.get(f"{api}/v1/products/{good['product_id']}", headers=SERVER).status_code == 404


def test_batches_are_bounded(api: str):
    many = {"products": [product(f"p{i}") for i in range(501)]}
    assert httpx.put(f"{api}/v1/products", json=many, headers=SERVER).status_code in (413, 422)
    assert httpx.put(f"{api}/v1/products", json={"products": []}, headers=SERVER).status_code == 422


def test_every_image_a_demo_product_message_shows_is_served(api: str, clickhouse: Client):
    assert load_demo_catalog(api, SERVER_KEY) == 5
    feed = httpx.get(f"{api}/demo/products.json").json()["products"]
    ids = [p["product_id"] for p in feed]
    products = Catalog(clickhouse).products(ids)
    assert set(products) == set(ids)
    tracking = Tracking(LINK_SECRET, api, "u-demo")
    for pid in [*ids, "not-in-the-catalog"]:
        for kind, spec in Templates():
            rendered = render(
                kind=kind,
                message_id=uuid.uuid4().hex,
                storefront_url=f"{api}/demo",
                discount_percent=10,
                product=products.get(pid),
                tracking=tracking,
                template_spec=spec,
            )
            assert pid not in rendered.whatsapp.body
            images = {rendered.whatsapp.image_url}
            if rendered.template and rendered.template.header_image_url:
                images.add(rendered.template.header_image_url)
            for url in images:
                answer = httpx.get(url)
                assert answer.status_code == 200, url
                assert answer.headers["content-type"] == "image/png"
                assert answer.content.startswith(b"\x89PNG\r\n\x1a\n")
    # A product's message names and shows it.
    camera = render(
        kind="cart_rescue",
        message_id="c" * 32,
        storefront_url=f"{api}/demo",
        discount_percent=10,
        product=products["cam-001"],
    )
    assert "Aperture X100 Camera" in camera.whatsapp.body
    assert camera.whatsapp.image_url.endswith("/demo/images/cam-001.png")


async def receipts_for(brokers: str, message_id: str, quiet_s: float = 1.5, timeout_s: float = 20):
    """Every receipt of ``message_id`` on the topic: read until found, then ``quiet_s`` more."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes, dict]] = []
    try:
        partitions = [TopicPartition(RECEIPTS.name, p) for p in range(RECEIPTS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    value = orjson.loads(record.value)
                    if value.get("message_id") == message_id:
                        found.append((record.key, value))
                        quiet_until = time.monotonic() + quiet_s
            if quiet_until is not None and time.monotonic() >= quiet_until and not batch:
                break
    finally:
        await consumer.stop()
    return found


def token_for(message_id: str, landing: str = "/product/cam-001", channel: str = "sms") -> str:
    return link_token(
        LINK_SECRET,
        message_id=message_id,
        kind="high_intent",
        channel=channel,
        user_key="shopper-42",
        landing=landing,
    )


def test_a_click_is_recorded_once_and_the_shopper_lands_on_the_product(api: str, broker: str):
    message_id = uuid.uuid4().hex
    token = token_for(message_id)
    for _ in range(3):  # the shopper taps the link three times
        answer = httpx.get(f"{api}/v1/r/{token}", follow_redirects=False)
        assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{api}/demo/product/cam-001"
    query = parse_qs(target.query)
    assert query == {
        "utm_source": ["intentflow"],
        "utm_medium": ["sms"],
        "utm_campaign": ["high_intent"],
        "utm_message_id": [message_id],
    }
    assert httpx.get(answer.headers["location"]).status_code == 200  # the page exists
    found = asyncio.run(receipts_for(broker, message_id))
    assert len(found) == 1
    key, receipt = found[0]
    assert key == b"shopper-42"
    assert receipt["status"] == "clicked" and receipt["channel"] == "sms"
    assert receipt["user_key"] == "shopper-42" and receipt["kind"] == "high_intent"
    later = click_receipt(Link(message_id, "high_intent", "sms", "shopper-42", "/"), NOW)
    assert receipt["receipt_id"] == later.receipt_id  # any click of it: one receipt


def test_a_forged_or_garbled_link_is_a_404_and_records_nothing(api: str, broker: str):
    message_id = uuid.uuid4().hex
    genuine = token_for(message_id)
    forged = link_token(
        "not-our-secret",
        message_id=message_id,
        kind="high_intent",
        channel="sms",
        user_key="shopper-42",
        landing="https://evil.example/",
    )
    flipped = genuine[:10] + ("A" if genuine[10] != "A" else "B") + genuine[11:]
    for bad in (forged, flipped, genuine[:-3], "garbage", "x" * 5000):
        answer = httpx.get(f"{api}/v1/r/{bad}", follow_redirects=False)
        assert answer.status_code == 404, bad[:40]
        assert "location" not in answer.headers
    assert asyncio.run(receipts_for(broker, message_id, timeout_s=4)) == []


def test_with_the_broker_down_the_shopper_still_lands_and_the_click_is_kept_for_retry(
    caplog: pytest.LogCaptureFixture,
):
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    settings = collector_settings(
        f"{LOOPBACK}:{free_port()}",  # nothing listens there
        link_secret=LINK_SECRET,
        storefront_url="https://shop.example",
        produce_timeout_s=1.0,
    )
    message_id = uuid.uuid4().hex
    caplog.set_level("WARNING", logger="api.routes.links")
    with running_api(settings, port):
        started = time.monotonic()
        answer = httpx.get(f"{url}/v1/r/{token_for(message_id)}", follow_redirects=False)
        waited = time.monotonic() - started
        assert answer.status_code == 302
        assert answer.headers["location"].startswith("https://shop.example/product/cam-001?")
        assert waited < 3.0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            message_id in r.getMessage() and "queued for retry" in r.getMessage()
            for r in caplog.records
        ):
            time.sleep(0.05)
    assert any(
        message_id in r.getMessage() and "queued for retry" in r.getMessage()
        for r in caplog.records
    )
    # Stopped before the broker came back: the click is reported lost, never dropped silently.
    assert any(message_id in r.getMessage() and "lost" in r.getMessage() for r in caplog.records)


def test_a_click_queued_while_the_broker_was_down_is_recorded_once_it_is_back(
    tmp_path, caplog: pytest.LogCaptureFixture
):
    broker_port, api_port = free_port(), free_port()
    settings = collector_settings(
        f"{LOOPBACK}:{broker_port}",
        link_secret=LINK_SECRET,
        storefront_url="https://shop.example",
        produce_timeout_s=1.0,
    )
    message_id = uuid.uuid4().hex
    caplog.set_level("WARNING", logger="api.routes.links")
    with running_api(settings, api_port) as url:
        answer = httpx.get(f"{url}/v1/r/{token_for(message_id)}", follow_redirects=False)
        assert answer.status_code == 302
        with Broker(port=broker_port, log_path=tmp_path / "broker.log") as late:
            asyncio.run(ensure_topics(late.bootstrap_servers, [RECEIPTS]))
            found = asyncio.run(receipts_for(late.bootstrap_servers, message_id, timeout_s=60))
    assert [value["status"] for _, value in found] == ["clicked"]
    assert not any("lost" in r.getMessage() for r in caplog.records)


def sink(clickhouse: Client, events: list) -> None:
    """The events through the sink's processor, batch and writer into the warehouse."""
    writer = WarehouseWriter("unused", "unused")
    writer._client = clickhouse
    batch = SinkBatch("telemetry.raw")
    for offset, event in enumerate(events):
        batch.add(0, offset, process_event(event.to_json(), 0))
    writer.write_batch(batch)


def backend_event(pid: str, name: str, at: datetime, from_server: bool = True):
    raw = {
        "event_id": str(uuid.uuid4()),
        "name": "product_view",
        "timestamp": at.isoformat(),
        "anonymous_id": "catalog-backend",
        "properties": {"product_id": pid, "name": name, "price": 10.0, "currency": "EUR"},
    }
    return parse_event(raw, received_at=datetime.now(UTC), from_server=from_server)


def test_the_newest_of_api_upserts_and_event_entries_wins(api: str, clickhouse: Client):
    pid = f"mixed-{uuid.uuid4().hex[:6]}"
    catalog = Catalog(clickhouse)
    older = datetime.now(UTC) - timedelta(hours=1)
    sink(clickhouse, [backend_event(pid, "From an old event", older)])
    assert catalog.products([pid])[pid].name == "From an old event"
    upserted = httpx.put(
        f"{api}/v1/products", json={"products": [product(pid, name="From the API")]}, headers=SERVER
    )
    assert upserted.status_code == 200
    # An event older than the upsert (a back-fill, a late tracker) does not undo it.
    sink(clickhouse, [backend_event(pid, "From an older event", older + timedelta(minutes=5))])
    assert catalog.products([pid])[pid].name == "From the API"
    # A browser's event, however new, never changes the catalog.
    newer = datetime.now(UTC) + timedelta(seconds=30)
    sink(clickhouse, [backend_event(pid, "FREE PHONE", newer, from_server=False)])
    assert catalog.products([pid])[pid].name == "From the API"
    # A store backend's newer event wins whole (no image: the API's image is gone with it).
    sink(clickhouse, [backend_event(pid, "From a newer event", newer)])
    found = catalog.products([pid])[pid]
    assert (found.name, found.image_url) == ("From a newer event", None)
    got = httpx.get(f"{api}/v1/products/{pid}", headers=SERVER).json()
    assert got["name"] == "From a newer event"
    # After merges the table agrees with the readers.
    clickhouse.command("OPTIMIZE TABLE products FINAL")
    (row,) = clickhouse.query(
        "SELECT name FROM products FINAL WHERE product_id = {p:String}", parameters={"p": pid}
    ).result_rows
    assert row == ("From a newer event",)


def test_a_tracked_click_counts_in_the_nudge_metrics_and_attributes_the_order(
    api: str, broker: str, clickhouse: Client
):
    message_id = uuid.uuid4().hex
    answer = httpx.get(f"{api}/v1/r/{token_for(message_id)}", follow_redirects=False)
    assert answer.status_code == 302
    # What the receipts sink writes: the receipt as the redirect published it.
    [(_, value)] = asyncio.run(receipts_for(broker, message_id))
    writer = WarehouseWriter("unused", "unused")
    writer._client = clickhouse
    batch = SinkBatch(RECEIPTS.name)
    batch.add(0, 0, process_receipt(orjson.dumps(value), 0))
    # The shopper orders from the landing page, whose URL carries the message id.
    landed = parse_qs(urlsplit(answer.headers["location"]).query)
    ordered_at = datetime.now(UTC) + timedelta(seconds=5)
    raw_order = {
        "event_id": str(uuid.uuid4()),
        "name": "order_placed",
        "timestamp": ordered_at.isoformat(),
        "anonymous_id": "anon-shopper-42",
        "user_id": "shopper-42",
        "context": {"campaign": {"utm_message_id": landed["utm_message_id"][0]}},
        "properties": {
            "order_id": f"o-{message_id[:8]}",
            "items": [{"product_id": "cam-001", "quantity": 1, "amount": 899.0}],
            "total": 899.0,
            "currency": "EUR",
        },
    }
    order_event = parse_event(raw_order, received_at=datetime.now(UTC), from_server=True)
    batch.add(0, 1, process_event(order_event.to_json(), 0))
    writer.write_batch(batch)
    now_ms = int(time.time() * 1000)
    span = TimeRange(now_ms - 3_600_000, now_ms + 3_600_000)
    [attributed] = [
        o for o in attributed_orders(clickhouse, span, 3600) if o.message_id == message_id
    ]
    assert (attributed.channel, attributed.revenue) == ("sms", 899.0)
    rows = {(r["kind"], r["channel"]): r for r in nudge_outcomes(clickhouse, span, 3600, "live")}
    assert rows[("high_intent", "sms")]["clicked"] >= 1
    assert rows[("high_intent", "sms")]["converted"] >= 1


@pytest.mark.parametrize(
    "agent",
    [
        "facebookexternalhit/1.1 Facebot Twitterbot/1.0",  # iMessage's preview
        "WhatsApp/2.23.20.0 A",
        "TelegramBot (like TwitterBot)",
    ],
)
def test_a_link_preview_lands_but_is_no_click(api: str, broker: str, agent: str):
    message_id = uuid.uuid4().hex
    answer = httpx.get(
        f"{api}/v1/r/{token_for(message_id)}", headers={"User-Agent": agent}, follow_redirects=False
    )
    assert answer.status_code == 302
    assert asyncio.run(receipts_for(broker, message_id, timeout_s=3)) == []


def test_the_admin_preview_names_the_catalog_product(api: str):
    pid = f"preview-{uuid.uuid4().hex[:6]}"
    entry = product(pid, name="Preview Lamp", image_url=f"{api}/demo/images/logo.png")
    assert httpx.put(f"{api}/v1/products", json={"products": [entry]}, headers=SERVER).is_success
    shown = httpx.post(
        f"{api}/v1/admin/messages/preview",
        json={"kind": "high_intent", "product": pid, "name": "Ada Lovelace"},
        headers=ADMIN,
    )
    assert shown.status_code == 200, shown.text
    card = shown.json()["whatsapp"]
    assert card["body"].startswith("Hi Ada, still thinking about Preview Lamp?")
    assert card["image_url"] == entry["image_url"]
    # A preview's link is the storefront's own: following it counts no click.
    assert "/v1/r/" not in card["button"]["url"]
    unknown = httpx.post(
        f"{api}/v1/admin/messages/preview",
        json={"kind": "high_intent", "product": "no-such-product"},
        headers=ADMIN,
    ).json()["whatsapp"]
    assert "no-such-product" not in unknown["body"] and "what caught your eye" in unknown["body"]
