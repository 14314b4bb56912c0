"""The demo shop in headless Chromium, end to end: consent in the profile dialog, checkout
through the shop's backend (order_placed with the server key), a collector that is down,
a rescue link that restores its cart and discount, a VIP token redeemed once. Every test
also checks the pages for CSP violations and console errors, and saves a screenshot of
each page it passes (test-output/screenshots/, for a reviewer)."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from playwright.sync_api import Page, expect

from pipeline.sink.rows import NUDGES, nudge_row
from schemas.messages import CartItem
from schemas.tokens import TokenKeys, sign_token
from tests.collector_server import SERVER_KEY, WRITE_KEY, collector_settings, running_api
from tests.e2e.browser import assert_clean, screenshot
from tests.e2e.test_console_browser import insert
from tests.e2e.test_tracker_browser import events_of, wait_until_sent
from tests.integration.test_offers import rescue

TOKEN_SECRET = "demo-shop-browser-token-secret-32-bytes"
PHONE = "+447911123456"
MASKED = "+44 ••••••3456"


def shop_settings(broker: str, warehouse: str, clickhouse: Client, **overrides):
    return collector_settings(
        broker,
        demo_write_key=WRITE_KEY,
        demo_server_key=SERVER_KEY,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        token_secret=TOKEN_SECRET,
        **overrides,
    )


@pytest.fixture(scope="module")
def shop(broker: str, warehouse: str, clickhouse: Client) -> Iterator[str]:
    with running_api(shop_settings(broker, warehouse, clickhouse)) as url:
        yield url


def fill_profile(page: Page, customer: str, phone: str = "", *consents: str) -> None:
    page.locator("#profile-badge").click()
    dialog = page.locator("#profile-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Customer id").fill(customer)
    if phone:
        dialog.get_by_label("Phone").fill(phone)
    for consent in consents:
        page.check(f"#consent-{consent}")
    page.locator("#profile-save").click()
    expect(dialog).to_be_hidden()


def add_to_cart(page: Page, shop: str, product_id: str) -> None:
    page.goto(f"{shop}/demo/product/{product_id}")
    page.locator("#add-to-cart").click()
    expect(page.locator("#added")).to_have_text("Added to your cart.")


def place_order(page: Page, shop: str) -> None:
    page.goto(f"{shop}/demo/checkout")
    page.locator("#place-order").click()


def test_consent_in_the_profile_dialog_reaches_the_collector_and_shows_masked(
    page: Page, shop: str, broker: str
):
    page.goto(f"{shop}/demo/")
    expect(page.locator("#profile-badge")).to_have_text("Sign in")
    page.locator("#profile-badge").click()
    screenshot(page, "shop-profile-dialog")
    page.locator("#profile-cancel").click()
    fill_profile(page, "cust-consent", PHONE, "whatsapp-updates", "sms-offers")
    expect(page.locator("#profile-badge")).to_have_text(MASKED)
    screenshot(page, "shop-catalog")
    wait_until_sent(page)
    anonymous_id = page.evaluate("intentflow.anonymousId()")
    # Never the number in full on the page, nor in what the shop keeps.
    assert "7911123" not in page.content()
    assert "7911123" not in page.evaluate("localStorage.getItem('demo:profile')")

    def four(found: list[dict]) -> bool:
        return len([e for e in found if e["name"] == "consent"]) >= 4

    consents = [e for e in events_of(broker, anonymous_id, four) if e["name"] == "consent"]
    decisions = {
        (e["properties"]["channel"], e["properties"]["purpose"]): e["properties"]["granted"]
        for e in consents
    }
    assert decisions == {
        ("whatsapp", "transactional"): True,
        ("whatsapp", "marketing"): False,
        ("sms", "transactional"): False,
        ("sms", "marketing"): True,
    }
    assert all(e["user_id"] == "cust-consent" for e in consents)
    assert all(e["properties"]["phone_masked"] == MASKED for e in consents)
    # The dialog opens again with what was chosen, the phone shown masked only.
    page.locator("#profile-badge").click()
    expect(page.locator("#profile-customer-id")).to_have_value("cust-consent")
    expect(page.locator("#profile-phone")).to_have_value("")
    expect(page.locator("#profile-phone")).to_have_attribute("placeholder", MASKED)
    expect(page.locator("#consent-sms-offers")).to_be_checked()
    expect(page.locator("#consent-sms-updates")).not_to_be_checked()
    assert_clean(page)


def test_checkout_sends_the_order_from_the_shop_backend_at_catalog_prices(
    page: Page, shop: str, broker: str
):
    page.goto(f"{shop}/demo/")
    fill_profile(page, "cust-order")
    add_to_cart(page, shop, "cam-001")
    screenshot(page, "shop-product")
    add_to_cart(page, shop, "wat-001")
    # A shopper edits the price the page keeps: the shop charges the catalog's.
    page.evaluate(
        "() => { const c = JSON.parse(localStorage.getItem('demo:cart'));"
        " c['cam-001'].price = 1; localStorage.setItem('demo:cart', JSON.stringify(c)); }"
    )
    page.goto(f"{shop}/demo/cart")
    expect(page.locator("#cart tr")).to_have_count(2)
    expect(page.locator("#cart img.thumb").first).to_have_attribute(
        "src", "/demo/images/cam-001.png"
    )
    screenshot(page, "shop-cart")
    page.locator("#checkout-link").click()
    page.wait_for_url("**/demo/checkout")
    screenshot(page, "shop-checkout")
    anonymous_id = page.evaluate("intentflow.anonymousId()")
    page.locator("#place-order").click()
    expect(page.locator("#confirmation")).to_contain_text("1228.00 EUR")
    confirmation = page.locator("#confirmation").inner_text()
    order_id = confirmation.split("Your order ")[1].split(" ")[0]
    assert order_id.startswith("demo-")
    screenshot(page, "shop-confirmation")
    expect(page.locator("#place-order")).to_be_hidden()  # one order per checkout
    expect(page.locator("#cart-count")).to_have_text("0")

    def ordered(found: list[dict]) -> bool:
        return any(e["name"] == "order_placed" for e in found)

    orders = [e for e in events_of(broker, anonymous_id, ordered) if e["name"] == "order_placed"]
    assert len(orders) == 1
    order = orders[0]
    assert order["from_server"] is True  # the server key's origin: the engine trusts it
    assert (order["user_id"], order["anonymous_id"]) == ("cust-order", anonymous_id)
    props = order["properties"]
    assert props["order_id"] == order_id
    assert {i["product_id"]: i["amount"] for i in props["items"]} == {
        "cam-001": 899.0,
        "wat-001": 329.0,
    }
    assert (props["total"], props["currency"]) == (1228.0, "EUR")
    assert "ip" not in order  # a store backend's address says nothing of the shopper
    assert_clean(page)


def test_a_collector_that_is_down_leaves_the_order_unplaced_and_the_cart_kept(
    page: Page, broker: str, warehouse: str, clickhouse: Client
):
    # The shop's backend reaches the collector at public_api_url: nothing listens there.
    settings = shop_settings(broker, warehouse, clickhouse, public_api_url="http://127.0.0.1:1")
    with running_api(settings) as shop:
        page.goto(f"{shop}/demo/")
        fill_profile(page, "cust-down")
        add_to_cart(page, shop, "hea-001")
        place_order(page, shop)
        error = page.locator("#checkout-error")
        expect(error).to_have_text(
            "Your order was not placed: the order service is unreachable. "
            "Your cart is kept; please try again."
        )
        screenshot(page, "shop-checkout-not-placed")
        expect(page.locator("#place-order")).to_be_enabled()
        expect(page.locator("#checkout-items tr")).to_have_count(1)
        expect(page.locator("#confirmation")).to_have_text("")
        assert page.evaluate("Object.keys(JSON.parse(localStorage.getItem('demo:cart')))") == [
            "hea-001"
        ]
    # The one failure is the expected one, said by the browser as it says any 502.
    failures = page.watched.errors  # type: ignore[attr-defined]
    assert all("502" in failure for failure in failures) and failures, failures
    page.watched.errors.clear()  # type: ignore[attr-defined]
    assert_clean(page)


def test_a_rescue_link_restores_the_cart_and_its_discount(
    page: Page, shop: str, broker: str, clickhouse: Client
):
    message_id = uuid.uuid4().hex
    cart = (
        CartItem(product_id="cam-001", quantity=1, price=899.0),
        CartItem(product_id="hea-001", quantity=2, price=249.0),
    )
    decided = datetime.now(UTC) - timedelta(hours=2)
    nudge = rescue(message_id, decided, "cust-rescued", cart)
    insert(clickhouse, NUDGES, [nudge_row(nudge, "live")])
    # A fresh browser: nothing in its storage but what the link brings.
    page.goto(
        f"{shop}/demo/cart?utm_source=intentflow&utm_medium=whatsapp"
        f"&utm_campaign=cart_rescue&utm_message_id={message_id}"
    )
    expect(page.locator("#discount")).to_have_text("10 % off from your message")
    expect(page.locator("#cart tr")).to_have_count(2)
    expect(page.locator("#cart tr[data-product-id='hea-001']")).to_contain_text("× 2")
    expect(page.locator("#cart-total")).to_have_text("Total: 1257.30 EUR")  # (899 + 498) × 0.9
    screenshot(page, "shop-cart-rescued")
    fill_profile(page, "cust-rescued")
    page.locator("#checkout-link").click()
    page.wait_for_url("**/demo/checkout")
    expect(page.locator("#cart-total")).to_have_text("Total: 1257.30 EUR")
    anonymous_id = page.evaluate("intentflow.anonymousId()")
    page.locator("#place-order").click()
    expect(page.locator("#confirmation")).to_contain_text("1257.30 EUR")
    expect(page.locator("#discount")).to_be_hidden()  # the offer is spent

    def ordered(found: list[dict]) -> bool:
        return any(e["name"] == "order_placed" for e in found)

    order = next(e for e in events_of(broker, anonymous_id, ordered) if e["name"] == "order_placed")
    assert order["context"]["campaign"]["utm_message_id"] == message_id  # attribution
    assert order["properties"]["discount_percent"] == 10.0
    assert order["properties"]["total"] == 1257.3
    assert order["user_id"] == "cust-rescued"
    assert_clean(page)


def vip_token(token_id: str) -> str:
    now = datetime.now(UTC)
    claims = {
        "jti": token_id,
        "sub": "cust-vip",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(days=7)).timestamp()),
        "discount_percent": 15.0,
    }
    return sign_token(claims, TokenKeys("k1", {"k1": TOKEN_SECRET}))


def test_a_vip_token_is_redeemed_once_and_a_replay_is_refused_with_its_reason(
    page: Page, shop: str, broker: str
):
    token = vip_token(uuid.uuid4().hex)
    for attempt in ("first", "again"):
        page.goto(f"{shop}/demo/?utm_source=intentflow&vip_token={token}")
        expect(page.locator("#vip")).to_have_text("VIP: 15 % off at checkout")
        assert "vip_token" not in page.url  # a bearer credential leaves the address bar
        anonymous_id = page.evaluate("intentflow.anonymousId()")
        if attempt == "first":
            screenshot(page, "shop-vip-landing")
            fill_profile(page, "cust-vip")
        add_to_cart(page, shop, "cam-001")
        place_order(page, shop)
        if attempt == "first":
            expect(page.locator("#vip-result")).to_have_text("VIP discount applied: 15 %.")
            expect(page.locator("#confirmation")).to_contain_text("764.15 EUR")  # 899 × 0.85
        else:
            expect(page.locator("#vip-result")).to_have_text(
                "Your VIP token was refused (replayed: this token was already redeemed)."
                " The order was placed without its discount."
            )
            expect(page.locator("#confirmation")).to_contain_text("899.00 EUR")
            screenshot(page, "shop-vip-refused")
        expect(page.locator("#vip")).to_be_hidden()

    # ... and never travels in an event: the tracker sends the landing's address without it.
    def landing_views(found: list[dict]) -> list[dict]:
        return [
            e
            for e in found
            if e["name"] == "page_view" and "utm_source=intentflow" in e["properties"]["url"]
        ]

    found = events_of(broker, anonymous_id, lambda found: len(landing_views(found)) >= 2)
    assert [e["properties"]["url"] for e in landing_views(found)] == [
        f"{shop}/demo/?utm_source=intentflow"
    ] * 2
    assert all("vip_token" not in str(e) for e in found)
    assert_clean(page)
