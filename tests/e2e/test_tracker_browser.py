"""The tracker in headless Chromium on the /demo/ shop, through the API, onto the raw topic."""

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Browser, Page

from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.ports import free_port
from schemas.topics import SOURCE_TOPICS
from tests.collector_server import (
    SERVER_KEY,
    WRITE_KEY,
    collector_settings,
    consume_matching,
    running_api,
)

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code: Playwright's sync API owns this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def events_of(brokers: str, anonymous_id: str, until: Any, timeout_s: float = 20.0) -> list[dict]:
    return run(
        consume_matching(brokers, lambda e: e["anonymous_id"] == anonymous_id, until, timeout_s)
    )


def wait_until_sent(page: Page, timeout_ms: float = 15_000) -> None:
    page.wait_for_function(
        "() => window.intentflow && window.intentflow.queued() === 0", timeout=timeout_ms
    )


def test_a_shopping_journey_arrives_with_its_properties(
    browser: Browser, broker: str, warehouse: str, clickhouse
):
    # Consent is recorded (phone sealed) in the warehouse before the event is produced.
    settings = collector_settings(
        broker,
        demo_write_key=WRITE_KEY,
        demo_server_key=SERVER_KEY,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
    )
    with running_api(settings) as api:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(f"{api}/demo/")
        page.get_by_role("link", name="Aperture X100 Camera").click()
        page.wait_for_url("**/demo/product/cam-001")
        anonymous_id = page.evaluate("intentflow.anonymousId()")

        page.locator("#specs").scroll_into_view_if_needed()
        page.wait_for_timeout(3_600)  # linger over the specs past the 3 s threshold
        page.locator("#add-to-cart").click()
        # Exit intent: the pointer leaves through the top edge of the window.
        page.mouse.move(600, 200)
        page.mouse.move(600, 5)
        page.mouse.move(600, -20)
        wait_until_sent(page)

        page.goto(f"{api}/demo/cart")
        page.locator("#checkout-link").click()
        page.wait_for_url("**/demo/checkout")
        # Who orders is the profile's: checkout asks for it in the dialog, then orders.
        page.click("#place-order")
        page.wait_for_selector("#profile-dialog[open]")
        page.fill("#profile-customer-id", "cust-42")
        page.fill("#profile-phone", "+12025550123")
        page.check("#consent-whatsapp-updates")
        page.check("#consent-sms-offers")
        page.click("#profile-save")
        page.wait_for_selector("#confirmation:has-text('Thank you')")
        wait_until_sent(page)
        page.close()

    expected = {
        "page_view",
        "product_view",
        "spec_linger",
        "deep_scroll",
        "add_to_cart",
        "exit_intent",
        "checkout_started",
        "identify",
        "consent",
        "order_placed",
    }
    events = events_of(broker, anonymous_id, lambda found: expected <= {e["name"] for e in found})
    by_name: dict[str, list[dict]] = {}
    for event in events:
        by_name.setdefault(event["name"], []).append(event)
    assert expected <= set(by_name), sorted(by_name)

    product = by_name["product_view"][0]["properties"]
    assert product == {"product_id": "cam-001", "category": "cameras", "price": 899.0}
    linger = by_name["spec_linger"][0]["properties"]
    assert linger["product_id"] == "cam-001" and linger["dwell_ms"] >= 3_000
    assert by_name["add_to_cart"][0]["properties"] == {
        "product_id": "cam-001",
        "quantity": 1,
        "price": 899.0,
        "category": "cameras",
    }
    assert len(by_name["exit_intent"]) == 1
    consent = by_name["consent"][0]["properties"]
    assert "phone" not in consent and consent["phone_ref"]  # never in clear on a topic
    assert {k: consent[k] for k in ("channel", "granted", "phone_masked")} == {
        "channel": "whatsapp",
        "granted": True,
        "phone_masked": "+1 ••••••0123",
    }
    page_views = {e["context"]["page"]["path"] for e in by_name["page_view"]}
    assert {"/demo/", "/demo/product/cam-001", "/demo/cart", "/demo/checkout"} <= page_views
    # Before identify, no user id; from identify on, every event carries it.
    identify = by_name["identify"][0]
    assert identify["user_id"] == "cust-42"
    assert "user_id" not in by_name["add_to_cart"][0]
    assert by_name["consent"][0]["user_id"] == "cust-42"
    # Each channel and purpose is its own decision: only what was ticked is granted.
    decisions = {
        (e["properties"]["channel"], e["properties"]["purpose"]): e["properties"]["granted"]
        for e in by_name["consent"]
    }
    assert decisions == {
        ("whatsapp", "transactional"): True,
        ("whatsapp", "marketing"): False,
        ("sms", "transactional"): False,
        ("sms", "marketing"): True,
    }
    # The order comes from the shop's backend (server key): no shopper's address on it.
    assert all(e["ip"] == "127.0.0.0" for e in events if e["name"] != "order_placed")
    order = by_name["order_placed"][0]
    assert order["from_server"] is True and order["user_id"] == "cust-42"


def test_demo_pages_escape_and_send_security_headers(browser: Browser, broker: str):
    settings = collector_settings(broker, demo_write_key=WRITE_KEY)
    with running_api(settings) as api:
        page = browser.new_page()
        response = page.goto(f"{api}/demo/product/hea-001")
        assert response is not None
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        # The product name holds "<Pro>" and "&": shown as text, not markup.
        assert page.locator("#product-name").inner_text() == "Quiet <Pro> Headphones & Case"
        assert page.locator("pro").count() == 0
        tracker = page.request.get(f"{api}/tracker.js")
        assert tracker.headers["content-type"].startswith("text/javascript")
        assert tracker.headers["x-content-type-options"] == "nosniff"
        page.close()


def test_events_wait_in_local_storage_while_the_collector_fails(browser: Browser, tmp_path: Path):
    port = free_port()
    broker = Broker(port=port, log_path=tmp_path / "broker.log").start()
    try:
        run(ensure_topics(broker.bootstrap_servers, SOURCE_TOPICS))
        settings = collector_settings(
            broker.bootstrap_servers, demo_write_key=WRITE_KEY, produce_timeout_s=1.5
        )
        with running_api(settings) as api:
            page = browser.new_page()
            page.goto(f"{api}/demo/")
            wait_until_sent(page)
            anonymous_id = page.evaluate("intentflow.anonymousId()")

            broker.stop()  # the collector now answers 503
            page.goto(f"{api}/demo/product/wat-001")
            page.wait_for_timeout(2_500)
            queued = page.evaluate("JSON.parse(localStorage.getItem('intentflow:queue'))")
            assert {e["name"] for e in queued} >= {"page_view", "product_view"}
            # Leaving the page keeps them: nothing is dropped on the way.
            page.goto(f"{api}/demo/cart")
            page.wait_for_timeout(500)
            assert page.evaluate("intentflow.queued()") >= 3

            broker = Broker(port=port, log_path=tmp_path / "broker-again.log").start()
            run(ensure_topics(broker.bootstrap_servers, SOURCE_TOPICS))
            wait_until_sent(page, timeout_ms=45_000)
            page.close()

        def delivered(found: list[dict]) -> bool:
            paths = {e["context"]["page"]["path"] for e in found if e["name"] == "page_view"}
            return {"/demo/product/wat-001", "/demo/cart"} <= paths

        events = events_of(broker.bootstrap_servers, anonymous_id, delivered)
        assert delivered(events)
        views = [e for e in events if e["name"] == "product_view"]
        assert views and views[0]["properties"]["product_id"] == "wat-001"
    finally:
        broker.stop()
