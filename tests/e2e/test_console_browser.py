"""The operator console in headless Chromium: sign in, read the overview's figures
(seeded into the warehouse with the sink's own row functions), watch the live
timeline update without a reload, find a shopper, pause and resume a channel and
see it in ``channel_controls``, draft message variants with the language model (a
stand-in, tests/chat_server.py) and see they are not live — with no CSP violation and no
console error."""

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from playwright.sync_api import ConsoleMessage, Page, expect

from pipeline.sink.rows import (
    EVENTS,
    NUDGES,
    PRODUCTS,
    RECEIPTS,
    event_row,
    nudge_row,
    receipt_row,
)
from schemas.catalog import Product, product_row
from schemas.dispatch_tables import CHANNEL_CONTROLS
from schemas.events import Event, parse_event
from schemas.keys import hash_api_key
from schemas.time import epoch_ms
from tests.chat_server import ChatServer, model_settings, running_chat_server
from tests.collector_server import collector_settings, running_api
from tests.e2e.browser import assert_clean
from tests.rows import nudge, receipt, variants_in_force

ADMIN_KEY = "ak_console-browser-admin"
READ_KEY = "rk_console-browser-read"
MODEL_KEY = "sk-console-browser-stand-in"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
A, B, C = "a" * 32, "b" * 32, "c" * 32


def make_event(name: str, at: datetime, user: str, message: str = "", **props: Any) -> Event:
    raw: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "anonymous_id": f"anon-{user}",
        "user_id": user,
        "properties": props,
    }
    if message:
        raw["context"] = {"campaign": {"utm_message_id": message}}
    return parse_event(raw, received_at=at)


def insert(clickhouse: Client, table, rows: list[tuple]) -> None:
    clickhouse.insert(
        table.name, list(zip(*rows, strict=True)), table.columns, column_oriented=True
    )


@pytest.fixture(scope="module")
def seeded(clickhouse: Client) -> None:
    m = timedelta(minutes=1)
    events = []
    for n, user in enumerate(("shopper-ua", "shopper-ub", "shopper-uc")):
        at = T0 + n * m
        events += [
            make_event("page_view", at, user, url="https://shop.example/"),
            make_event("product_view", at + m, user, product_id="p1", category="cameras"),
        ]
        if user != "shopper-uc":
            events.append(
                make_event("add_to_cart", at + 2 * m, user, product_id="p1", quantity=1, price=100)
            )
    items = [{"product_id": "p1", "quantity": 1, "amount": 100.0}]
    events.append(
        make_event(
            "order_placed", T0 + 60 * m, "shopper-ua", A,
            order_id="o-1", items=items, total=100.0, currency="EUR",
        )
    )  # fmt: skip
    insert(clickhouse, EVENTS, [event_row(e) for e in events])
    nudges = [
        nudge(A, "cart_rescue", "shopper-ua", T0 + 5 * m, ("whatsapp",)),
        nudge(B, "high_intent", "shopper-ub", T0 + 6 * m, ("sms",)),
        nudge(
            C, "cart_rescue", "shopper-uc", T0 + 7 * m, (), status="suppressed", reason="holdout"
        ),
    ]
    insert(clickhouse, NUDGES, [nudge_row(n, "live") for n in nudges])
    price = {"currency": "EUR"}
    receipts = [
        receipt(A, "shopper-ua", "cart_rescue", "whatsapp", "sent", T0 + 8 * m, cost=0.05, **price),
        receipt(A, "shopper-ua", "cart_rescue", "whatsapp", "delivered", T0 + 9 * m),
        receipt(A, "shopper-ua", "cart_rescue", "whatsapp", "read", T0 + 10 * m),
        receipt(A, "shopper-ua", "cart_rescue", "whatsapp", "clicked", T0 + 11 * m),
        receipt(B, "shopper-ub", "high_intent", "sms", "sent", T0 + 8 * m, cost=0.01, **price),
        receipt(B, "shopper-ub", "high_intent", "sms", "delivered", T0 + 12 * m),
    ]
    insert(clickhouse, RECEIPTS, [receipt_row(r) for r in receipts])
    # The catalog names the product the previews are made for.
    camera = Product("cam-001", "Aperture X100 Camera", 499.0, "EUR")
    insert(clickhouse, PRODUCTS, [product_row(camera, epoch_ms(T0), "api")])


def console_settings(broker: str, warehouse: str, clickhouse: Client, **overrides: Any):
    return collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
        read_key_hashes=frozenset({hash_api_key(READ_KEY)}),
        **overrides,
    )


@pytest.fixture(scope="module")
def console(broker: str, warehouse: str, clickhouse: Client, seeded: None) -> Iterator[str]:
    """The console with no language model configured: drafting is off."""
    with running_api(console_settings(broker, warehouse, clickhouse)) as url:
        yield url


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatServer]:
    with running_chat_server(MODEL_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def drafting_console(
    broker: str, warehouse: str, clickhouse: Client, seeded: None, chat: ChatServer
) -> Iterator[str]:
    """The console with the stand-in as its language model."""
    settings = console_settings(broker, warehouse, clickhouse, **model_settings(chat, 10.0))
    with running_api(settings) as url:
        yield url


def sign_in(page: Page, console: str, key: str) -> None:
    page.goto(f"{console}/console/")
    page.wait_for_url("**/console/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console}/console/")


def figure(page: Page, name: str):
    return page.locator(f"#figure-{name} .value")


def test_overview_figures_and_a_live_timeline(page: Page, console: str, clickhouse: Client):
    sign_in(page, console, READ_KEY)
    expect(page.locator(".toast-ok")).to_have_text("Signed in with a read key.")
    expected = {"sent": "2", "delivered": "2", "read": "1", "clicked": "1", "converted": "1"}
    for name, value in expected.items():
        expect(figure(page, name)).to_have_text(value)
    expect(figure(page, "revenue")).to_have_text("100.00")
    expect(figure(page, "cost")).to_have_text("0.06")
    expect(figure(page, "opt_outs")).to_have_text("0")
    expect(page.locator("#uplift tr.uplift-holdout")).to_be_visible()
    funnel = page.locator("section.panel", has_text="Storefront funnel")
    expect(funnel.locator("li", has_text="add_to_cart")).to_contain_text("2 users")
    expect(funnel.locator("li", has_text="page_view")).to_contain_text("3 users")

    timeline = page.locator("#timeline")
    expect(timeline.locator("tr.event-receipt", has_text="clicked")).to_have_count(1)
    expect(page.locator("#timeline-state")).to_contain_text("live")
    # A receipt arriving now shows up without a reload.
    now = datetime.now(UTC)
    late = receipt(B, "shopper-ub", "high_intent", "sms", "read", now)
    insert(clickhouse, RECEIPTS, [receipt_row(late)])
    row = timeline.locator("tr.event-receipt", has_text="read").filter(has_text="sms")
    expect(row).to_have_count(1, timeout=15_000)
    assert_clean(page)


def test_find_a_shopper_and_read_why(page: Page, console: str):
    sign_in(page, console, READ_KEY)
    page.get_by_role("link", name="Shoppers").click()
    expect(page.locator("#shopper-count")).to_contain_text("3 shoppers")
    page.get_by_label("Find").fill("UA")  # any case
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#shopper-count")).to_contain_text("1 shopper matching")
    page.get_by_role("link", name="shopper-ua").click()
    expect(page.locator("#shopper-id")).to_have_text("shopper-ua")
    decision = page.locator("#decisions tbody tr", has_text="cart_rescue")
    expect(decision).to_contain_text("emit")
    expect(decision).to_contain_text("clicked")  # the message's newest receipt
    steps = page.locator("#messages tr", has_text="a" * 12).locator("ol.receipts li")
    expect(steps).to_have_text(
        [re.compile(f"^{s} · whatsapp") for s in ("sent", "delivered", "read", "clicked")]
    )
    # A read session is told, not shown a failure, when it tries to act.
    expect(page.locator(".actions .note")).to_contain_text("read key")
    assert_clean(page)


def paused(clickhouse: Client, channel: str) -> int:
    return clickhouse.query(
        f"SELECT argMax(paused, at) FROM {CHANNEL_CONTROLS} WHERE channel = {{c:String}}",
        parameters={"c": channel},
    ).result_rows[0][0]


def test_pause_and_resume_a_channel(page: Page, console: str, clickhouse: Client):
    sign_in(page, console, ADMIN_KEY)
    page.get_by_role("link", name="Channels").click()
    row = page.locator("#channel-sms")
    expect(row.locator(".state")).to_have_text("running")
    row.get_by_role("button", name="Pause").click()
    expect(page.locator(".toast-ok")).to_contain_text("SMS is paused")
    expect(row.locator(".state")).to_have_text("paused")
    assert paused(clickhouse, "sms") == 1
    expect(page.locator("#channel-whatsapp .state")).to_have_text("running")
    row.get_by_role("button", name="Resume").click()
    expect(page.locator(".toast-ok")).to_contain_text("SMS is running again")
    expect(row.locator(".state")).to_have_text("running")
    assert paused(clickhouse, "sms") == 0
    assert_clean(page)


def test_preview_both_renderings_then_sign_out(page: Page, console: str):
    sign_in(page, console, ADMIN_KEY)
    page.get_by_role("link", name="Messages").click()
    page.get_by_label("Product id").fill("cam-001")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#whatsapp-preview .wa-body")).to_contain_text("Aperture X100")
    expect(page.locator("#sms-preview pre")).to_contain_text("Aperture X100")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/signin")
    page.goto(f"{console}/console/channels")
    page.wait_for_url("**/console/signin")
    assert_clean(page)


_ = ConsoleMessage  # the type of what page.on("console") records


def live_variants(clickhouse: Client) -> None:
    """Cart rescue's variants in force now, as the dispatcher records the bandit's
    snapshot of those in the rules file: the ones the console shows as live."""
    effective_ms = epoch_ms(datetime.now(UTC) - timedelta(minutes=1))
    variants_in_force(clickhouse, "cart_rescue", effective_ms, ("control", 30, 3), ("warm", 30, 6))


def test_drafted_variants_are_shown_to_copy_and_not_live(
    page: Page, drafting_console: str, chat: ChatServer, clickhouse: Client
):
    live_variants(clickhouse)
    drafted = [
        {"name": "gentle", "sms": "{name}, your cart waits: {discount}% off. {cta}"},
        {"name": "last_call", "title": "Last call, {name}", "body": "{discount}% off today."},
    ]
    chat.reply = lambda body: orjson.dumps({"variants": drafted}).decode()
    sign_in(page, drafting_console, ADMIN_KEY)
    live = page.locator("#variants tbody tr")
    expect(live).to_have_count(2)
    form = page.locator("#drafts-form")
    form.get_by_label("Kind").select_option("cart_rescue")
    form.get_by_label("How many").fill("2")
    form.get_by_label("Brief").fill("gentle, then urgent")
    form.get_by_role("button", name="Draft variants").click()

    expect(page.locator("h1")).to_have_text("Drafted variants: cart rescue")
    rows = page.locator("#drafts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("gentle")
    expect(rows.nth(0)).to_contain_text("your cart waits: {discount}% off. {cta}")
    expect(rows.nth(1)).to_contain_text("last_call")
    expect(page.locator("#drafts-yaml")).to_contain_text("name: last_call")
    expect(page.locator("#rejected")).to_have_count(0)
    # The approval is the rules file: the page says nothing is applied ...
    expect(page.locator("#how-to-apply")).to_contain_text("Nothing is applied")
    expect(page.locator("#how-to-apply")).to_contain_text("dispatch.templates.cart_rescue.variants")
    assert chat.requests[-1]["messages"][-1]["content"] == "gentle, then urgent"
    # ... and the variants in force are still the rules file's, without the drafts.
    page.get_by_role("link", name="Overview").click()
    expect(live).to_have_count(2)
    expect(page.locator("#variants .variant-cart_rescue-control")).to_be_visible()
    expect(page.locator("#variants .variant-cart_rescue-warm")).to_be_visible()
    expect(page.locator("#variants tbody")).not_to_contain_text("gentle")
    expect(page.locator("#variants tbody")).not_to_contain_text("last_call")
    assert_clean(page)


def test_without_a_model_the_console_says_drafting_is_off(page: Page, console: str):
    sign_in(page, console, ADMIN_KEY)
    expect(page.locator("#drafts-off")).to_contain_text("Drafting variants needs a language model")
    expect(page.locator("#drafts-form")).to_have_count(0)
    assert_clean(page)


def test_build_a_segment_with_a_live_count_then_schedule_and_cancel_a_campaign(
    page: Page, console: str
):
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, console, ADMIN_KEY)
    page.get_by_role("link", name="Segments").click()
    builder = page.locator("#builder")
    # The first condition has no value yet: the count says why instead of a number.
    expect(page.locator("#audience-state")).to_contain_text("must be a")
    builder.get_by_label("value").fill("50")  # total_spend > 50: shopper-ua spent 100
    expect(page.locator("#audience-size")).to_have_text("1")
    expect(page.locator("#audience-sample tbody tr")).to_have_text(re.compile("shopper-ua"))
    # An OR group inside: spent over 50, or seen in the last 7 days (all three were).
    builder.get_by_role("button", name="+ group").first.click()
    group = builder.locator(".group .group")
    group.get_by_label("field").select_option("last_seen")
    group.get_by_label("operator").select_option("within_days")
    group.get_by_label("value").fill("7")
    builder.get_by_label("group").first.select_option("OR")
    expect(page.locator("#audience-size")).to_have_text("3")
    # The phrase box writes the rules.
    page.get_by_label("Describe it").fill("spent over 50")
    page.get_by_role("button", name="Read into rules").click()
    expect(page.locator("#phrase-result")).to_contain_text("check them below")
    expect(page.locator("#audience-size")).to_have_text("1")
    page.get_by_label("Name", exact=True).fill("Big spenders")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator(".toast-ok")).to_contain_text("Big spenders")
    expect(page.locator("#segments")).to_contain_text("Big spenders")

    page.get_by_role("link", name="Campaign…").first.click()
    form = page.locator("#campaign-form")
    form.get_by_label("Name").fill("Spring offer")
    form.get_by_label("Product id").fill("cam-001")
    form.get_by_role("button", name="Preview the message").click()
    expect(page.locator("#whatsapp-preview")).to_contain_text("Aperture X100")
    expect(page.locator("#sms-preview")).to_contain_text("Aperture X100")
    form = page.locator("#campaign-form")
    expect(form.get_by_label("Name")).to_have_value("Spring offer")  # kept across the preview
    form.get_by_label("Send at (empty: at once)").fill(
        (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    )
    form.get_by_label("Quiet hours (shopper's local time)").check()
    form.get_by_role("button", name="Schedule campaign").click()
    expect(page.locator(".toast-ok")).to_contain_text("Campaign scheduled for")
    expect(page.locator("#campaign-status")).to_have_text("scheduled")
    # Not launched: nothing sent, no one to compare, and the summary says so.
    expect(page.locator("#campaign-summary")).to_have_text(
        "Campaign “Spring offer” (scheduled): nothing sent; "
        "no shopper nudged, so no conversions to compare."
    )
    expect(page.locator("#history")).to_contain_text("campaign_create")
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator("#campaign-status")).to_have_text("cancelled")
    page.get_by_role("link", name="Campaigns").click()
    expect(page.locator("#campaigns")).to_contain_text("Spring offer")
    assert_clean(page)
