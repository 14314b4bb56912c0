"""The whole loop as an evaluator walks it, in headless Chromium, with no curl:
``intentflow local up`` (broker, warehouse, worker, dispatcher, provider simulator,
API), the demo shop and the console.

Open the shop, consent in the profile, add to cart, leave; watch the rescue in the
console go sent → delivered → read; open it on the shopper's phone (the provider
simulator's ``/phone`` page) and follow its link: the cart comes back with the
discount; check out; see the conversion; pause WhatsApp and see SMS take over;
revoke; erase. Every page it passes is saved as a screenshot under
``test-output/screenshots/`` (not committed) for a reviewer to look at.

It runs on ``make demo``'s rules (pipeline/local/demo_rules.yaml): a cart is rescued
20 s after exit intent (time is the partitions' watermark, moved by the live worker
while the partition is idle), no quiet hours (the test runs at any hour), no holdout
(the shopper must be treated).
"""

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from api.queries.nudges import ALL as ALL_CHANNELS
from tests import support
from tests.e2e.browser import Watched
from tests.e2e.browser import screenshot as shot

DEMO_RULES = support.PROJECT_ROOT / "pipeline" / "local" / "demo_rules.yaml"
PHONE = "+447700900987"  # Ofcom's range for drama: never a real subscriber
MASKED_TAIL = "0987"
STARTUP_TIMEOUT_S = 180.0
LOOP_TIMEOUT_MS = 90_000  # decide, send, and the simulator's webhooks, on a busy 2-core machine
STEP_TIMEOUT_MS = 20_000  # one page's own request (an order, an offer) on that machine


@dataclass(frozen=True)
class Stack:
    api: str
    phones: str
    dispatcher_metrics: str
    admin_key: str
    read_key: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = support.child_env(
        RULES=str(DEMO_RULES),
        # The shopper reads every message and clicks only when the test does.
        SIM_READ_RATE="1",
        SIM_CLICK_RATE="0",
        SIM_DELAY_S="0.2",
    )
    root = tmp_path_factory.mktemp("demo-loop")
    with support.local_stack(root, env=env, timeout_s=STARTUP_TIMEOUT_S) as running:
        keys = running.env
        yield Stack(
            api=running.api,
            phones=running.url("phones"),
            dispatcher_metrics=running.metrics["dispatcher"],
            admin_key=keys["INTENTFLOW_ADMIN_KEY"],
            read_key=keys["INTENTFLOW_READ_KEY"],
        )


def api_get(stack: Stack, path: str) -> dict:
    answer = httpx.get(
        f"{stack.api}{path}", headers={"Authorization": f"Bearer {stack.read_key}"}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()


def api_post(stack: Stack, path: str, body: dict) -> dict:
    answer = httpx.post(
        f"{stack.api}{path}",
        json=body,
        headers={"Authorization": f"Bearer {stack.admin_key}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()


def reload_until(page: Page, locator, timeout_ms: float = LOOP_TIMEOUT_MS) -> None:
    """Server-rendered pages show what the warehouse has: reload until ``locator`` shows."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            expect(locator).to_be_visible(timeout=2_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


def receipts_of(page: Page, kind: str, channel: str):
    return page.locator("#messages tr", has_text=kind).locator(
        "ol.receipts li", has_text=f"· {channel}"
    )


def test_the_whole_loop_from_the_shop_to_the_console(stack: Stack, browser: Browser) -> None:
    shopper = Watched(
        browser.new_context(viewport={"width": 1200, "height": 900}), accept_dialogs=True
    )
    operator = Watched(
        browser.new_context(viewport={"width": 1300, "height": 900}), accept_dialogs=True
    )
    try:
        walk_the_loop(stack, shopper, operator, f"demo-{uuid.uuid4().hex[:8]}")
    except BaseException:
        # Where it stopped, for whoever reads the failure.
        for n, page in enumerate((*shopper.context.pages, *operator.context.pages)):
            shot(page, f"loop-failed-{n}")
        raise


def walk_the_loop(stack: Stack, shopper: "Watched", operator: "Watched", customer: str) -> None:
    shop = shopper.context.new_page()
    console = operator.context.new_page()

    # The shop: consent in the profile, separately per channel and purpose.
    shop.goto(f"{stack.api}/demo/")
    shot(shop, "loop-shop-catalog")
    shop.locator("#profile-badge").click()
    dialog = shop.locator("#profile-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#profile-customer-id").fill(customer)
    dialog.locator("#profile-phone").fill(PHONE)
    for box in ("whatsapp-updates", "whatsapp-offers", "sms-updates", "sms-offers"):
        dialog.locator(f"#consent-{box}").check()
    shot(shop, "loop-shop-consent-dialog")
    dialog.locator("#profile-save").click()
    expect(shop.locator("#profile-badge")).to_contain_text(MASKED_TAIL, timeout=STEP_TIMEOUT_MS)
    assert PHONE not in shop.content()  # masked on the page, never the whole number

    # Add to cart, then leave: the cart goes idle and the engine decides a rescue.
    shop.goto(f"{stack.api}/demo/product/cam-001")
    shot(shop, "loop-shop-product")
    shop.locator("#add-to-cart").click()
    expect(shop.locator("#added")).not_to_be_empty()
    shop.goto(f"{stack.api}/demo/cart")
    expect(shop.locator("#cart")).to_contain_text("Aperture X100", timeout=STEP_TIMEOUT_MS)
    shot(shop, "loop-shop-cart")
    # Leave as a person does: the pointer goes out through the top edge (exit intent),
    # then the tab closes (the tracker flushes on pagehide).
    shop.mouse.move(600, 300)
    shop.mouse.move(600, -20)
    shopper.assert_clean(shop)
    shop.close()

    # The console: the rescue goes sent → delivered → read on WhatsApp.
    console.goto(f"{stack.api}/console/")
    console.get_by_label("API key").fill(stack.admin_key)
    console.get_by_role("button", name="Sign in").click()
    console.wait_for_url(f"{stack.api}/console/")
    console.goto(f"{stack.api}/console/shoppers/{customer}")
    rescue = receipts_of(console, "cart_rescue", "whatsapp")
    reload_until(console, rescue.filter(has_text="read"))
    # (Meta's own "sent", our "accepted", carries whole seconds: it may list first.)
    steps = [text.split(" · ")[0] for text in rescue.all_inner_texts()]
    assert [s for s in steps if s != "accepted"] == ["sent", "delivered", "read"], steps
    shot(console, "loop-console-shopper-rescued")

    # The shopper's phone: the WhatsApp card names the product; its button is our link.
    phone = shopper.context.new_page()
    phone.goto(stack.phones)
    card = phone.locator(
        f"section.phone[data-phone$='{MASKED_TAIL}'] article"
        "[data-kind='cart_rescue'][data-channel='whatsapp']"
    )
    expect(card).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    expect(card.locator(".text")).to_contain_text("Aperture X100")
    shot(phone, "loop-phone-whatsapp-rescue")
    card.locator("a.open").click()

    # The link restores the cart with the message's discount.
    phone.wait_for_url(re.compile(r"/demo/cart\?.*utm_message_id="))
    expect(phone.locator("#cart")).to_contain_text("Aperture X100", timeout=STEP_TIMEOUT_MS)
    expect(phone.locator("#discount")).to_contain_text("10", timeout=STEP_TIMEOUT_MS)
    shot(phone, "loop-shop-cart-restored")
    phone.locator("#checkout-link").click()
    phone.locator("#place-order").click()
    expect(phone.locator("#confirmation")).to_contain_text("order", timeout=STEP_TIMEOUT_MS)
    shot(phone, "loop-shop-order-placed")
    shopper.assert_clean(phone)

    # Clicked, then converted: the console's figures are the metrics API's.
    reload_until(console, rescue.filter(has_text="clicked"))
    console.goto(f"{stack.api}/console/")
    converted = console.locator("#figure-converted .value")
    reload_until(console, converted.filter(has_text=re.compile(r"^1$")))
    shot(console, "loop-console-overview")
    # The overview's figures are the metrics API's, number for number.
    for name in ("sent", "delivered", "read", "clicked", "converted"):
        expect(console.locator(f"#figure-{name} .value")).to_have_text(
            str(overview_figure(stack, name))
        )

    # Pause WhatsApp: the next rescue goes by SMS.
    console.goto(f"{stack.api}/console/channels")
    console.locator("#channel-whatsapp").get_by_role("button", name="Pause").click()
    expect(console.locator("#channel-whatsapp .state")).to_have_text(
        "paused", timeout=STEP_TIMEOUT_MS
    )
    shot(console, "loop-console-channels")
    # The dispatcher polls the switches; its gauge says when it has seen the pause.
    support.wait_for(
        lambda: (
            support.metric_value(
                support.scrape_metrics(stack.dispatcher_metrics),
                "intentflow_channel_paused",
                channel="whatsapp",
            )
            == 1
        ),
        STEP_TIMEOUT_MS / 1000,
        "the dispatcher to see WhatsApp paused",
    )
    console.goto(f"{stack.api}/console/shoppers/{customer}")
    flow = console.locator("form[action$='/cart-rescue']")
    flow.get_by_label("Product").fill("cam-001")
    flow.get_by_label("Price").fill("899")
    flow.get_by_role("button", name="Start cart rescue").click()
    by_sms = receipts_of(console, "cart_rescue", "sms")
    reload_until(console, by_sms.filter(has_text="delivered"))
    phone.goto(stack.phones)
    expect(
        phone.locator(
            f"section.phone[data-phone$='{MASKED_TAIL}'] article[data-channel='sms']"
        ).first
    ).to_contain_text("Aperture X100")
    shot(phone, "loop-phone-sms")

    # The message preview shows what the admin API renders, to the letter.
    console.get_by_role("link", name="Messages").click()
    form = console.locator("#preview-form")
    form.get_by_label("Kind").select_option("high_intent")
    form.get_by_label("Shopper").fill(customer)
    form.get_by_label("Product id").fill("cam-001")
    form.get_by_role("button", name="Preview").click()
    rendered = api_post(
        stack,
        "/v1/admin/messages/preview",
        {"kind": "high_intent", "user_id": customer, "product": "cam-001"},
    )
    expect(console.locator("#whatsapp-preview .wa-body")).to_have_text(rendered["whatsapp"]["body"])
    expect(console.locator("#sms-preview pre")).to_have_text(rendered["sms"])
    expect(console.locator("#recipients")).to_contain_text(MASKED_TAIL)
    shot(console, "loop-console-messages")
    # Every other page, for the reviewer's screenshots.
    for link in ("Shoppers", "Segments", "Campaigns", "Backtests", "Audit & dead letters"):
        console.get_by_role("link", name=link, exact=True).click()
        expect(console.locator("h1")).to_be_visible()
        shot(console, f"loop-console-{link.split()[0].lower()}")
    console.goto(f"{stack.api}/console/shoppers/{customer}")

    # Revoke WhatsApp offers, then erase the shopper.
    revoke = console.locator("#consents tr", has_text="whatsapp").filter(has_text="marketing")
    revoke.get_by_role("button", name="Revoke").click()
    expect(
        console.locator("#consents tr", has_text="whatsapp").filter(has_text="marketing")
    ).to_contain_text("no")
    shot(console, "loop-console-shopper-revoked")
    erase = console.locator("form[action$='/erase']")
    erase.get_by_label("Type the id to confirm").fill(customer)
    erase.get_by_role("button", name="Erase shopper").click()
    expect(console.locator("main")).to_contain_text("erase", timeout=STEP_TIMEOUT_MS)
    shot(console, "loop-console-erased")
    operator.assert_clean(console)


def overview_figure(stack: Stack, name: str) -> int:
    """The metrics API's count of ``name`` over the console's default week, every message
    once (the per-kind rows over all channels)."""
    week_ago = int((time.time() - 7 * 86_400) * 1000)
    rows = api_get(stack, f"/v1/metrics/nudges?from={week_ago}")["rows"]
    return sum(row[name] for row in rows if row["channel"] == ALL_CHANNELS)
