"""The console's sessions and forms on the real API and warehouse: signing in, CSRF
(absent, forged, from another session, from another origin), expiry, read sessions
refused actions with a clear message, and errors shown as sentences."""

import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.auth import Scope
from api.console.session import COOKIE, ConsoleSettings, issue, signing_key
from api.main import create_app
from api.privacy.consent import master_key
from api.privacy.store import ConsentDecision, PrivacyStore
from api.queries.timeline import message_steps, receipts_of
from pipeline.sink.rows import (
    DEAD_LETTERS,
    EVENTS,
    RECEIPTS,
    dead_letter_row,
    event_row,
    nudge_row,
    receipt_row,
)
from pipeline.sink.rows import NUDGES as NUDGES_TABLE
from schemas.deadletter import DeadLetter
from schemas.dispatch_tables import CHANNEL_CONTROLS
from schemas.events import parse_event
from schemas.keys import hash_api_key
from schemas.messages import Nudge, Receipt
from schemas.topics import NUDGES
from tests.collector_server import api_client, collector_settings, consume_matching
from tests.integration.test_hostile_input import HOSTILE_TEXT

ADMIN_KEY = "ak_console-admin-key"
READ_KEY = "rk_console-read-key"
READ_ONLY = "opened with a read key"
BAD_FORM = "security token did not match"


def settings_for(broker: str, warehouse: str, database: str, **overrides):
    return collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=database,
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
        read_key_hashes=frozenset({hash_api_key(READ_KEY)}),
        **overrides,
    )


@pytest.fixture(scope="module")
def settings(broker: str, warehouse: str, clickhouse: Client):
    return settings_for(broker, warehouse, clickhouse.database)


@pytest.fixture(scope="module")
def server(settings) -> Iterator[str]:
    with api_client(settings) as client:
        yield str(client.base_url)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


@contextmanager
def signed_in(server: str, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        form = client.get("/console/signin")
        response = client.post("/console/signin", data={"csrf": csrf_of(form.text), "key": key})
        assert response.status_code == 303, response.text[:300]
        assert response.headers["location"] == "/console/"
        yield client


def controls(clickhouse: Client) -> int:
    return clickhouse.query(f"SELECT count() FROM {CHANNEL_CONTROLS}").result_rows[0][0]


def test_pages_need_a_session(server: str):
    with httpx.Client(base_url=server) as anonymous:
        for path in ("/console/", "/console/shoppers", "/console/api/timeline"):
            response = anonymous.get(path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert response.status_code == 303
            assert response.headers["location"] == "/console/signin"


def test_sign_in_sets_a_strict_http_only_cookie_and_refuses_wrong_keys(server: str):
    with httpx.Client(base_url=server) as client:
        form = client.get("/console/signin")
        token = csrf_of(form.text)
        wrong = client.post("/console/signin", data={"csrf": token, "key": "nope"})
        assert wrong.status_code == 401 and "was not accepted" in wrong.text
        for key in ("wk_test-write-key", "sk_test-server-key"):  # keys of other scopes
            refused = client.post("/console/signin", data={"csrf": token, "key": key})
            assert refused.status_code == 401
        signed = client.post("/console/signin", data={"csrf": token, "key": READ_KEY})
        assert signed.status_code == 303
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE))
        lowered = cookie.lower()
        assert "httponly" in lowered and "samesite=strict" in lowered and "path=/console" in lowered
        assert "secure" not in lowered  # plain http here; https below
        assert READ_KEY not in cookie
        assert client.get("/console/").status_code == 200


def test_sign_in_needs_its_form_token(server: str):
    with httpx.Client(base_url=server) as client:
        client.get("/console/signin")  # the pre-session nonce cookie
        absent = client.post("/console/signin", data={"key": ADMIN_KEY})
        forged = client.post("/console/signin", data={"key": ADMIN_KEY, "csrf": "x" * 43})
        assert (absent.status_code, forged.status_code) == (403, 403)
        assert BAD_FORM in absent.text
        assert COOKIE + "=" not in absent.headers.get("set-cookie", "")


def test_the_cookie_is_secure_over_https(settings):
    with TestClient(create_app(settings), base_url="https://console.test") as client:
        token = csrf_of(client.get("/console/signin").text)
        response = client.post(
            "/console/signin", data={"csrf": token, "key": ADMIN_KEY}, follow_redirects=False
        )
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "secure" in cookie.lower()


def test_an_action_without_or_with_a_forged_token_is_refused(server: str, clickhouse: Client):
    before = controls(clickhouse)
    with signed_in(server, ADMIN_KEY) as admin, signed_in(server, ADMIN_KEY) as other:
        others_token = csrf_of(other.get("/console/channels").text)
        for data in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": others_token}):
            response = admin.post("/console/channels/sms/pause", data=data)
            assert response.status_code == 403, data
            assert BAD_FORM in response.text and "Traceback" not in response.text
        # The right token from another origin (a page elsewhere posting into the console).
        token = csrf_of(admin.get("/console/channels").text)
        response = admin.post(
            "/console/channels/sms/pause",
            data={"csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status_code == 403
    assert controls(clickhouse) == before


def test_a_read_session_sees_but_cannot_act(server: str, clickhouse: Client):
    before = controls(clickhouse)
    with signed_in(server, READ_KEY) as reader:
        page = reader.get("/console/channels")
        assert page.status_code == 200 and "admin key" in page.text
        token = csrf_of(page.text)
        for path, data in [
            ("/console/channels/whatsapp/pause", {}),
            ("/console/shoppers/someone/send", {"product_id": "p1"}),
            ("/console/shoppers/someone/cart-rescue", {"product_id": "p1"}),
            ("/console/shoppers/someone/erase", {"confirm": "someone"}),
            ("/console/shoppers/someone/consent", {"channel": "sms", "purpose": "marketing"}),
            ("/console/messages/preview", {"kind": "cart_rescue"}),
            ("/console/variants/drafts", {"kind": "cart_rescue"}),
        ]:
            response = reader.post(path, data={"csrf": token, **data})
            assert response.status_code == 403, path
            assert READ_ONLY in response.text, path
    assert controls(clickhouse) == before


def test_an_admin_session_acts_and_the_action_is_audited(server: str, clickhouse: Client):
    with signed_in(server, ADMIN_KEY) as admin:
        token = csrf_of(admin.get("/console/channels").text)
        response = admin.post(
            "/console/channels/whatsapp/pause", data={"csrf": token}, follow_redirects=True
        )
        assert response.status_code == 200  # followed to the channels page
        assert "WhatsApp is paused" in response.text
        assert 'id="channel-whatsapp"' in response.text
        row = clickhouse.query(
            f"SELECT argMax(paused, at), argMax(actor, at) FROM {CHANNEL_CONTROLS}"
            " WHERE channel = 'whatsapp'"
        ).result_rows[0]
        assert row == (1, f"admin:{hash_api_key(ADMIN_KEY)[:12]}")
        admin.post("/console/channels/whatsapp/resume", data={"csrf": token})
        audit = admin.get("/console/audit", params={"action": "channel_resume"})
        assert "channel_resume" in audit.text


def test_an_expired_or_foreign_session_is_refused(server: str, settings, clickhouse: Client):
    before = controls(clickhouse)
    key = signing_key(settings, ConsoleSettings())
    hashed = hash_api_key(ADMIN_KEY)
    expired = issue(key, Scope.ADMIN, hashed, 60, now=time.time() - 120)
    foreign = issue(b"another deployment's key........", Scope.ADMIN, hashed, 600)
    for value in (expired, foreign):
        with httpx.Client(base_url=server, cookies={COOKIE: value}) as client:
            assert client.get("/console/").status_code == 303
            response = client.post("/console/channels/sms/pause", data={"csrf": "anything"})
            assert response.status_code == 303
            assert response.headers["location"] == "/console/signin"
    live = issue(key, Scope.ADMIN, hashed, 60)
    with httpx.Client(base_url=server, cookies={COOKIE: live}) as client:
        assert client.get("/console/").status_code == 200
    assert controls(clickhouse) == before


def test_sign_out_ends_the_session_in_the_browser(server: str):
    with signed_in(server, ADMIN_KEY) as client:
        token = csrf_of(client.get("/console/").text)
        assert client.post("/console/signout", data={}).status_code == 403
        response = client.post("/console/signout", data={"csrf": token})
        assert response.status_code == 303
        assert client.get("/console/").status_code == 303


def test_pages_have_a_strict_policy_and_no_inline_code(server: str):
    with signed_in(server, ADMIN_KEY) as client:
        for path in (
            "/console/",
            "/console/shoppers",
            "/console/shoppers/nobody-here",
            "/console/channels",
            "/console/messages",
            "/console/audit",
            "/console/backtests",
        ):
            response = client.get(path)
            assert response.status_code in (200, 404), (path, response.text[:300])
            csp = response.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "style-src 'self';" in csp
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            html = response.text
            assert "<script>" not in html and " style=" not in html and " on" + "click" not in html


def test_what_an_operator_types_is_escaped(server: str):
    attack = '<script>alert("x")</script>'
    with signed_in(server, ADMIN_KEY) as client:
        for response in (
            client.get("/console/shoppers", params={"q": attack}),
            client.get("/console/messages", params={"product": attack, "user_id": attack}),
            client.get("/console/audit", params={"user_key": attack}),
        ):
            assert response.status_code == 200
            assert "<script>alert" not in response.text
            assert "&lt;script&gt;" in response.text


def test_a_warehouse_that_is_down_is_a_sentence_not_a_trace(broker: str):
    settings = settings_for(broker, "http://127.0.0.1:1", "default")
    with api_client(settings) as client:
        token = csrf_of(client.get("/console/signin").text)
        client.post("/console/signin", data={"csrf": token, "key": ADMIN_KEY})
        for path in ("/console/", "/console/shoppers", "/console/channels"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "unavailable right now" in response.text
            assert "Traceback" not in response.text and "clickhouse_connect" not in response.text
        timeline = client.get("/console/api/timeline")
        assert timeline.status_code == 503 and timeline.json()["rows"] == []
        token = csrf_of(client.get("/console/messages").text)
        response = client.post(
            "/console/channels/sms/pause", data={"csrf": token}, follow_redirects=True
        )
        assert response.status_code == 503  # back on the channels page, with the reason
        assert "unavailable right now" in response.text


async def test_an_admin_revokes_one_consent_and_the_engine_is_told(
    server: str, broker: str, clickhouse: Client
):
    user = f"revoke-{uuid.uuid4().hex[:8]}"
    store = PrivacyStore(clickhouse, master_key("test-pii-master-key"))
    granted = [
        ConsentDecision(user, channel, True, datetime.now(UTC), f"e-{channel}-{purpose}",
                        phone="+12025550123", purpose=purpose, trusted=True)
        for channel in ("whatsapp", "sms")
        for purpose in ("marketing", "transactional")
    ]  # fmt: skip
    store.record(granted)

    def consent(channel: str, purpose: str) -> bool:
        return next(
            c["granted"]
            for c in store.consents(user)
            if (c["channel"], c["purpose"]) == (channel, purpose)
        )

    with signed_in(server, ADMIN_KEY) as admin:
        page = admin.get(f"/console/shoppers/{user}")
        assert page.status_code == 200 and page.text.count("Revoke</button>") == 4
        data = {"csrf": csrf_of(page.text), "channel": "whatsapp", "purpose": "marketing"}
        done = admin.post(f"/console/shoppers/{user}/consent", data=data, follow_redirects=True)
        assert done.status_code == 200
        assert "whatsapp consent for marketing messages revoked" in done.text
        assert done.text.count("Revoke</button>") == 3
        bad = admin.post(
            f"/console/shoppers/{user}/consent",
            data={**data, "channel": "pigeon"},
            follow_redirects=True,
        )
        assert "choose a channel" in bad.text
    # Only that channel and purpose.
    assert not consent("whatsapp", "marketing")
    assert consent("whatsapp", "transactional") and consent("sms", "marketing")
    events = await consume_matching(
        broker,
        lambda e: e.get("name") == "consent" and e.get("anonymous_id") == user,
        lambda found: bool(found),
    )
    assert [e["properties"] for e in events] == [
        {"channel": "whatsapp", "granted": False, "purpose": "marketing"}
    ]
    audit = clickhouse.query(
        "SELECT action, channel, detail FROM audit_log WHERE user_key = {u:String}",
        parameters={"u": user},
    ).result_rows
    assert audit == [("consent_revoke", "whatsapp", "marketing")]


HOSTILE = [*HOSTILE_TEXT, "", " ", "../../etc/passwd", "%00", "a\x00b", "' OR 1=1 --", "x" * 300]
PAGE_PARAMS = {
    "/console/": ("range",),
    "/console/shoppers": ("q", "page_no"),
    "/console/messages": ("user_id", "kind", "product"),
    "/console/audit": ("user_key", "message_id", "action", "days"),
    "/console/backtests": ("a", "b"),
}
ACTIONS = {
    "/console/shoppers/{id}/send": ("kind", "product_id", "discount_percent", "request_id"),
    "/console/shoppers/{id}/cart-rescue": ("product_id", "quantity", "price", "discount_percent"),
    "/console/shoppers/{id}/consent": ("channel", "purpose"),
    "/console/shoppers/{id}/erase": ("confirm",),
    "/console/messages/preview": ("kind", "product", "name", "discount", "user_id"),
}


def test_hostile_values_get_a_page_never_a_5xx_or_a_validation_dump(server: str):
    findings = []

    def check(response: httpx.Response, what: str) -> None:
        if response.status_code == 303:
            return
        if response.status_code >= 500 or "text/html" not in response.headers["content-type"]:
            findings.append(f"{response.status_code} {what}")

    with signed_in(server, ADMIN_KEY) as admin:
        token = csrf_of(admin.get("/console/").text)
        for value in HOSTILE:
            for path, params in PAGE_PARAMS.items():
                for name in params:
                    check(admin.get(path, params={name: value}), f"GET {path}?{name}")
            quoted = urllib.parse.quote(value, safe="") or "%20"
            check(admin.get(f"/console/shoppers/{quoted}"), "GET /console/shoppers/{id}")
            check(admin.post(f"/console/channels/{quoted}/pause", data={"csrf": token}), "switch")
            for template, fields in ACTIONS.items():
                path = template.replace("{id}", "hostile-user")
                for name in fields:
                    response = admin.post(path, data={"csrf": token, name: value})
                    check(response, f"POST {path} {name}")
                    if response.status_code == 303:  # back with a message: the page renders
                        check(admin.get(response.headers["location"]), f"after {path} {name}")
    assert findings == []


async def nudges_for(broker: str, user: str, count: int, timeout_s: float = 20.0) -> list[dict]:
    """Decisions for ``user`` on the nudges topic, read until ``count`` arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    found: list[dict] = []
    try:
        partitions = [TopicPartition(NUDGES.name, p) for p in range(NUDGES.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values = (orjson.loads(record.value) for record in records)
                found.extend(v for v in values if v.get("user_key") == user)
    finally:
        await consumer.stop()
    return found


async def test_preview_then_send_and_a_cart_rescue_reach_the_dispatcher(
    server: str, broker: str, clickhouse: Client
):
    user = f"flow-{uuid.uuid4().hex[:8]}"
    store = PrivacyStore(clickhouse, master_key("test-pii-master-key"))
    store.record(
        [ConsentDecision(user, "sms", True, datetime.now(UTC), "e-flow", phone="+12025550199",
                         purpose="marketing", trusted=True)]
    )  # fmt: skip
    with signed_in(server, ADMIN_KEY) as admin:
        page = admin.get("/console/messages", params={"user_id": user, "kind": "high_intent"})
        token = csrf_of(page.text)
        shown = admin.post(
            "/console/messages/preview",
            data={"csrf": token, "user_id": user, "kind": "high_intent", "product": "cam-001"},
        )
        assert shown.status_code == 200
        assert 'id="whatsapp-preview"' in shown.text and 'id="sms-preview"' in shown.text
        assert "sms / marketing: granted" in shown.text  # the recipient, phone masked
        assert "+12025550199" not in shown.text
        send = re.search(r'<form method="post" action="([^"]+)"[^>]*id="send-form">', shown.text)
        assert send, "the preview offers to send"
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
        sent = admin.post(send.group(1), data=fields, follow_redirects=True)
        assert "queued on sms" in sent.text
        rescue = admin.post(
            f"/console/shoppers/{user}/cart-rescue",
            data={"csrf": token, "product_id": "cam-001", "quantity": "2", "price": "499"},
            follow_redirects=True,
        )
        assert "Cart rescue" in rescue.text and "started on sms" in rescue.text
        invalid = admin.post(
            f"/console/shoppers/{user}/cart-rescue",
            data={"csrf": token, "product_id": "cam-001", "quantity": "0"},
            follow_redirects=True,
        )
        assert "Please check the form" in invalid.text and "quantity" in invalid.text
    published = await nudges_for(broker, user, 2)
    kinds = sorted((n["kind"], n["rules_version"], tuple(n["channels"])) for n in published)
    assert kinds == [
        ("cart_rescue", "admin:flow", ("sms",)),
        ("high_intent", "admin:force", ("sms",)),
    ]


def test_erasing_a_shopper_shows_the_report_and_the_rows_are_gone(server: str, clickhouse: Client):
    user = f"erase-{uuid.uuid4().hex[:8]}"
    raw = {
        "event_id": str(uuid.uuid4()),
        "name": "page_view",
        "timestamp": datetime.now(UTC).isoformat(),
        "user_id": user,
        "anonymous_id": f"anon-{user}",
        "properties": {"url": "https://shop.example/"},
    }
    row = event_row(parse_event(raw, received_at=datetime.now(UTC)))
    clickhouse.insert(EVENTS.name, [list(row)], EVENTS.columns)
    count = "SELECT count() FROM events WHERE user_key = {u:String}"
    assert clickhouse.query(count, parameters={"u": user}).result_rows[0][0] == 1
    with signed_in(server, ADMIN_KEY) as admin:
        token = csrf_of(admin.get(f"/console/shoppers/{user}").text)
        unconfirmed = admin.post(
            f"/console/shoppers/{user}/erase", data={"csrf": token, "confirm": "someone else"},
            follow_redirects=True,
        )  # fmt: skip
        assert "Nothing was erased" in unconfirmed.text
        assert clickhouse.query(count, parameters={"u": user}).result_rows[0][0] == 1
        report = admin.post(
            f"/console/shoppers/{user}/erase", data={"csrf": token, "confirm": user}
        )
        assert report.status_code == 200
        assert "was erased everywhere" in report.text and "warehouse: events" in report.text
    assert clickhouse.query(count, parameters={"u": user}).result_rows[0][0] == 0


def test_backtests_compare_two_runs_and_dead_letters_are_listed(server: str, clickhouse: Client):
    at = datetime.now(UTC)

    def decision(nudge_id: str, user: str) -> Nudge:
        return Nudge(
            nudge_id=nudge_id, kind="high_intent", user_key=user, user_id=user, status="emit",
            triggered_at=at, decided_at=at, product_id="p1", discount_percent=10,
            channels=("sms",), score=0.8, rules_version="r1", trigger_event_id=f"e-{nudge_id}",
        )  # fmt: skip

    rows = [
        nudge_row(decision("1" * 32, "bt-u1"), "bt-a"),
        nudge_row(decision("2" * 32, "bt-u2"), "bt-a"),
        nudge_row(decision("1" * 32, "bt-u1"), "bt-b"),
    ]
    clickhouse.insert(NUDGES_TABLE.name, [list(r) for r in rows], NUDGES_TABLE.columns)
    letter = DeadLetter(source_topic="telemetry.raw", partition=0, offset=7,
                        reason="console-test-reason", value_b64="e30=")  # fmt: skip
    row = dead_letter_row(letter, int(at.timestamp() * 1000))
    clickhouse.insert(DEAD_LETTERS.name, [list(row)], DEAD_LETTERS.columns)
    with signed_in(server, READ_KEY) as reader:
        page = reader.get("/console/backtests", params={"a": "bt-a", "b": "bt-b"})
        assert page.status_code == 200
        assert 'id="runs"' in page.text and "bt-a" in page.text
        table = page.text[page.text.index('id="comparison"') :]
        only = re.search(r"nudges only here</th><td>(\d+)</td><td>(\d+)</td>", table)
        assert only and only.groups() == ("1", "0")
        unknown = reader.get("/console/backtests", params={"a": "bt-a", "b": "no-such-run"})
        assert unknown.status_code == 200 and "no-such-run" in unknown.text
        audit = reader.get("/console/audit")
        assert "console-test-reason" in audit.text  # dead letters: a read key sees them
        assert "Shown to admin sessions only" in audit.text  # the audit log: admin only


def test_a_messages_receipts_read_in_the_order_they_happened(clickhouse: Client):
    # Providers' webhooks carry whole seconds: Meta's delivery stamped 12:00:00 follows our
    # send at 12:00:00.400. Then WhatsApp is paused and the fallback leads to an SMS.
    second = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    ms = timedelta(milliseconds=1)
    user, message = f"order-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    happened = [
        ("whatsapp", "sent", second + 400 * ms),
        ("whatsapp", "accepted", second),
        ("whatsapp", "delivered", second),
        ("whatsapp", "read", second + 1000 * ms),
        ("whatsapp", "fallback", second + 5200 * ms),
        ("sms", "sent", second + 5250 * ms),
        ("sms", "delivered", second + 5000 * ms),
    ]
    rows = [
        receipt_row(
            Receipt(
                receipt_id=uuid.uuid4().hex,
                message_id=message,
                kind="cart_rescue",
                user_key=user,
                channel=channel,  # type: ignore[arg-type]
                status=status,  # type: ignore[arg-type]
                at=at,
            )
        )
        for channel, status, at in reversed(happened)  # arriving in any order
    ]
    clickhouse.insert(
        RECEIPTS.name, list(zip(*rows, strict=True)), RECEIPTS.columns, column_oriented=True
    )
    steps = message_steps(receipts_of(clickhouse, user))
    assert [(r["channel"], r["status"]) for r in steps] == [(c, s) for c, s, _ in happened]


def test_segments_and_campaigns_pages_show_auto_tags_and_filter_by_them(server: str):
    with signed_in(server, ADMIN_KEY) as client:
        csrf = csrf_of(client.get("/console/segments").text)
        rules = {"op": "AND", "rules": [{"field": "last_seen", "op": "inactive_days", "value": 45}]}
        saved = client.post(
            "/console/api/segments",
            json={"name": "lapsed", "description": "", "rules": rules},
            headers={"X-CSRF-Token": csrf, "Origin": server},
        )
        assert saved.status_code == 200, saved.text
        listed = client.get("/console/segments")
        assert '<a class="tag" href="/console/segments?tag=win-back"' in listed.text
        only = client.get("/console/segments", params={"tag": "win-back"})
        assert 'id="tag-filter"' in only.text and "lapsed" in only.text
        assert "lapsed" not in client.get("/console/segments", params={"tag": "geo"}).text
        unknown = client.get("/console/segments", params={"tag": "<b>x</b>"})
        assert unknown.status_code == 200 and "No such tag" in unknown.text
        assert "<b>x</b>" not in unknown.text
        assert 'id="tag-filter"' in client.get("/console/campaigns", params={"tag": "vip"}).text
