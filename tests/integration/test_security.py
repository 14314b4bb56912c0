"""Intruders: every endpoint × every key kind, injection into every caller value that
reaches ClickHouse, VIP tokens, keys held only as hashes, and the pages' headers.

The endpoint list comes from the app's routes: a route added without a row in
``ROWS`` fails ``test_every_route_has_a_row``.
"""

import base64
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from api.main import create_app
from pipeline.sink.rows import EVENTS, event_row
from schemas.events import parse_event
from schemas.keys import hash_api_key
from schemas.tokens import TokenKeys, sign_token
from tests import support
from tests.collector_server import (
    READ_KEY,
    SERVER_KEY,
    WRITE_KEY,
    collector_settings,
    event,
    running_api,
)

ADMIN_KEY = "ak_test-admin-key"
TOKEN_SECRET = "security-test-token-secret-of-32-bytes"
KEYS = {
    "none": None,
    "wrong": "rk_not-a-key-anyone-was-given",
    "write": WRITE_KEY,
    "server": SERVER_KEY,
    "read": READ_KEY,
    "admin": ADMIN_KEY,
}
CANARY = f"canary-{uuid.uuid4().hex}"


def settings_for(broker: str, warehouse: str, database: str):
    return collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=database,
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
        token_secret=TOKEN_SECRET,
        **support.api_provider_settings(),
        demo_write_key=WRITE_KEY,
    )


@pytest.fixture(scope="module")
def seeded(clickhouse: Client) -> int:
    """Events of a canary user nobody may read through an injection."""
    at = datetime.now(UTC) - timedelta(hours=1)
    rows = []
    for n in range(20):
        raw = event("page_view", user_id=CANARY, timestamp=(at + timedelta(seconds=n)).isoformat())
        rows.append(event_row(parse_event(raw, received_at=at)))
    clickhouse.insert(
        EVENTS.name, list(zip(*rows, strict=True)), EVENTS.columns, column_oriented=True
    )
    return len(rows)


@pytest.fixture(scope="module")
def api(broker: str, warehouse: str, clickhouse: Client, seeded: int) -> Iterator[str]:
    with running_api(settings_for(broker, warehouse, clickhouse.database)) as url:
        yield url


def auth(kind: str) -> dict[str, str]:
    key = KEYS[kind]
    return {"Authorization": f"Bearer {key}"} if key else {}


# --- the table ----------------------------------------------------------------------

EVENT = "__event__"  # replaced by a fresh valid event per request
SEGMENT = "__segment__"  # replaced by a fresh Segment message per request
SEGMENT_BATCH = "__segment_batch__"  # ... and by a Segment batch of one


def segment_message() -> dict[str, Any]:
    """One message every Segment call takes (the route's path says which call it is)."""
    return {
        "type": "track",
        "event": "Signed Up",
        "userId": "sec-user",
        "anonymousId": "sec-anon",
        "previousId": "sec-previous",
        "groupId": "sec-group",
        "properties": {"url": "https://shop.example/"},
        "messageId": str(uuid.uuid4()),
    }


def segment_rows() -> dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, int]]]:
    """Segment's HTTP API (write or server key), and analytics.js's one-letter paths."""
    rows = {}
    for call in ("batch", "track", "identify", "page", "screen", "alias", "group"):
        body = SEGMENT_BATCH if call == "batch" else SEGMENT
        for path in (f"/segment/v1/{call}", f"/segment/v1/{call[0]}"):
            rows[("POST", path)] = (path, {"json": body}, only(200, "write", "server"))
    return rows


ALL = tuple(KEYS)


def only(expected: int, *scopes: str) -> dict[str, int]:
    """``expected`` for the given key kinds, 401 for every other."""
    return {kind: expected if kind in scopes else 401 for kind in ALL}


def everyone(expected: int) -> dict[str, int]:
    return dict.fromkeys(ALL, expected)


SPAN = "from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z"
# (method, route path) → (concrete URL, request kwargs, status per key kind)
ROWS: dict[tuple[str, str], tuple[str, dict[str, Any], dict[str, int]]] = {
    ("GET", "/v1/health"): ("/v1/health", {}, everyone(503)),  # no worker in this test
    ("POST", "/v1/track"): ("/v1/track", {"json": EVENT}, only(202, "write", "server")),
    ("GET", "/tracker.js"): ("/tracker.js", {}, everyone(200)),
    ("GET", "/demo"): ("/demo", {}, everyone(307)),
    ("GET", "/demo/"): ("/demo/", {}, everyone(200)),
    ("GET", "/demo/product/{product_id}"): ("/demo/product/nope", {}, everyone(404)),
    ("GET", "/demo/cart"): ("/demo/cart", {}, everyone(200)),
    ("GET", "/demo/checkout"): ("/demo/checkout", {}, everyone(200)),
    ("GET", "/demo/assets/{name}"): ("/demo/assets/demo.js", {}, everyone(200)),
    ("GET", "/demo/images/{name}.png"): ("/demo/images/logo.png", {}, everyone(200)),
    ("GET", "/demo/products.json"): ("/demo/products.json", {}, everyone(200)),
    # The demo shop's backend takes no API key (its pages call it, same origin); it holds
    # its own server key, unset here: it answers what it can without one.
    ("POST", "/demo/api/profile"): ("/demo/api/profile", {"json": {}}, everyone(422)),
    ("POST", "/demo/api/orders"): ("/demo/api/orders", {"json": {}}, everyone(422)),
    ("GET", "/demo/api/offer"): ("/demo/api/offer?message_id=" + "0" * 32, {}, everyone(503)),
    # The offer a message made names its shopper and cart: store backends and operators.
    ("GET", "/v1/offers/{message_id}"): (
        "/v1/offers/" + "0" * 32,
        {},
        only(404, "server", "admin"),
    ),
    # A tracked link is its own credential (signed); a garbled one is a 404 page for all.
    ("GET", "/v1/r/{token}"): ("/v1/r/not-a-token", {}, everyone(404)),
    # Referral links: minted for a shopper by their store's backend or an operator, never
    # by a page's public key; following one needs no key (it lands on the storefront).
    ("POST", "/v1/referrals"): (
        "/v1/referrals",
        {"json": {"user_id": "sec-referrer"}},
        only(201, "server", "admin"),
    ),
    ("GET", "/v1/ref/{code}"): ("/v1/ref/abcdefghijkl", {}, everyone(302)),
    # The catalog: store backends write it; read and admin keys may look at it.
    ("PUT", "/v1/products"): ("/v1/products", {"json": {}}, only(422, "server")),
    ("GET", "/v1/products/{product_id}"): (
        "/v1/products/sec-nope",
        {},
        only(404, "server", "read", "admin"),
    ),
    ("GET", "/openapi.json"): ("/openapi.json", {}, everyone(200)),
    ("GET", "/docs"): ("/docs", {}, everyone(200)),
    ("GET", "/docs/oauth2-redirect"): ("/docs/oauth2-redirect", {}, everyone(200)),
    ("GET", "/redoc"): ("/redoc", {}, everyone(200)),
    # Webhooks authenticate by the providers' signatures: no API key of any kind gets in.
    ("POST", "/v1/webhooks/whatsapp"): ("/v1/webhooks/whatsapp", {"json": {}}, everyone(401)),
    ("POST", "/v1/webhooks/twilio"): (
        "/v1/webhooks/twilio",
        {"data": {"MessageSid": "SM1", "MessageStatus": "sent"}},
        everyone(401),
    ),
    # Meta's handshake: the verify token, not an API key.
    ("GET", "/v1/webhooks/whatsapp"): (
        "/v1/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
        {},
        everyone(403),
    ),
    ("GET", "/v1/backtests/compare"): (
        "/v1/backtests/compare?a=live&b=nosuchrun",
        {},
        only(404, "read"),
    ),
    ("POST", "/v1/admin/channels/{channel}/{action}"): (
        "/v1/admin/channels/sms/resume",
        {},
        only(200, "admin"),
    ),
    ("GET", "/v1/admin/channels"): ("/v1/admin/channels", {}, only(200, "admin")),
    ("POST", "/v1/admin/flows/cart-rescue"): (
        "/v1/admin/flows/cart-rescue",
        {"json": {"user_id": "sec-user", "items": [{"product_id": "p1"}]}},
        only(202, "admin"),
    ),
    ("POST", "/v1/admin/messages/send"): (
        "/v1/admin/messages/send",
        {"json": {"user_id": "sec-user", "product_id": "p1"}},
        only(202, "admin"),
    ),
    ("POST", "/v1/admin/messages/preview"): (
        "/v1/admin/messages/preview",
        {"json": {"kind": "cart_rescue", "product": "p1"}},
        only(200, "admin"),
    ),
    ("GET", "/v1/admin/audit"): ("/v1/admin/audit?limit=5", {}, only(200, "admin")),
    ("DELETE", "/v1/users/{user_id}"): ("/v1/users/sec-nobody", {}, only(200, "admin")),
    ("GET", "/v1/metrics/funnel"): (
        f"/v1/metrics/funnel?steps=page_view,add_to_cart&{SPAN}",
        {},
        only(200, "read"),
    ),
    ("GET", "/v1/metrics/timeseries"): (
        f"/v1/metrics/timeseries?metric=events&{SPAN}",
        {},
        only(200, "read"),
    ),
    ("GET", "/v1/metrics/nudges"): (f"/v1/metrics/nudges?{SPAN}", {}, only(200, "read")),
    ("GET", "/v1/metrics/nudges/not_sent"): (
        f"/v1/metrics/nudges/not_sent?{SPAN}",
        {},
        only(200, "read"),
    ),
    ("GET", "/v1/metrics/uplift"): (f"/v1/metrics/uplift?{SPAN}", {}, only(200, "read")),
    ("GET", "/v1/metrics/variants"): ("/v1/metrics/variants", {}, only(200, "read")),
    ("GET", "/v1/metrics/send_time"): (
        f"/v1/metrics/send_time?{SPAN}&kind=high_intent",
        {},
        only(200, "read"),
    ),
    ("GET", "/v1/summaries/nudges"): (
        f"/v1/summaries/nudges?{SPAN}&kind=cart_rescue",
        {},
        only(200, "read"),
    ),
    # A campaign's summary: whoever may read its report (read and admin keys).
    ("GET", "/v1/summaries/campaigns/{campaign_id}"): (
        "/v1/summaries/campaigns/" + "0" * 32,
        {},
        only(404, "read", "admin"),
    ),
    ("GET", "/v1/metrics/consumer_lag"): ("/v1/metrics/consumer_lag", {}, only(200, "read")),
    ("GET", "/v1/metrics/dead_letters"): (
        f"/v1/metrics/dead_letters?{SPAN}",
        {},
        only(200, "read"),
    ),
    ("GET", "/v1/metrics/opt_outs"): (f"/v1/metrics/opt_outs?{SPAN}", {}, only(200, "read")),
    ("GET", "/v1/metrics/costs"): (f"/v1/metrics/costs?{SPAN}", {}, only(200, "read")),
    ("GET", "/v1/metrics/referrals"): (
        f"/v1/metrics/referrals?{SPAN}",
        {},
        only(200, "read"),
    ),
    ("GET", "/v1/users/{user_id}/profile"): ("/v1/users/sec-nobody/profile", {}, only(200, "read")),
    # Segments and campaigns (admin; campaign reports also read). Bodies are left empty:
    # the table is about who gets past authentication, not the payloads.
    ("POST", "/v1/segments"): ("/v1/segments", {"json": {}}, only(422, "admin")),
    ("POST", "/v1/segments/parse"): ("/v1/segments/parse", {"json": {}}, only(422, "admin")),
    # Drafting needs a language model, which this API has none of: 404 (docs/dispatch.md).
    ("POST", "/v1/templates/{kind}/drafts"): (
        "/v1/templates/cart_rescue/drafts",
        {"json": {}},
        only(404, "admin"),
    ),
    ("GET", "/v1/segments"): ("/v1/segments", {}, only(200, "admin")),
    ("GET", "/v1/segments/{segment_id}"): ("/v1/segments/" + "0" * 32, {}, only(404, "admin")),
    ("GET", "/v1/segments/{segment_id}/preview"): (
        "/v1/segments/" + "0" * 32 + "/preview",
        {},
        only(404, "admin"),
    ),
    ("POST", "/v1/segments/{segment_id}/lookalike"): (
        "/v1/segments/" + "0" * 32 + "/lookalike",
        {"json": {}},
        only(404, "admin"),
    ),
    ("POST", "/v1/campaigns"): ("/v1/campaigns", {"json": {}}, only(422, "admin")),
    ("GET", "/v1/campaigns"): ("/v1/campaigns", {}, only(200, "read", "admin")),
    ("GET", "/v1/campaigns/{campaign_id}"): (
        "/v1/campaigns/" + "0" * 32,
        {},
        only(404, "read", "admin"),
    ),
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): (
        "/v1/campaigns/" + "0" * 32 + "/cancel",
        {},
        only(404, "admin"),
    ),
    ("DELETE", "/v1/campaigns/{campaign_id}"): (
        "/v1/campaigns/" + "0" * 32,
        {},
        only(404, "admin"),
    ),
    ("POST", "/v1/tokens/redeem"): (
        "/v1/tokens/redeem",
        {"json": {"token": "not.a.token"}},
        only(422, "server", "admin"),
    ),
    # The console takes no API key on a request: a key is exchanged for a session at
    # sign-in (tests/integration/test_console.py). Without one, pages and actions go to
    # the sign-in page, whatever key is sent; signing in without its form token is 403.
    ("GET", "/console"): ("/console", {}, everyone(307)),
    ("GET", "/console/"): ("/console/", {}, everyone(303)),
    ("GET", "/console/signin"): ("/console/signin", {}, everyone(200)),
    ("POST", "/console/signin"): ("/console/signin", {"data": {"key": ADMIN_KEY}}, everyone(403)),
    ("POST", "/console/signout"): ("/console/signout", {}, everyone(303)),
    ("GET", "/console/static/{name}"): ("/console/static/console.js", {}, everyone(200)),
    ("GET", "/console/api/timeline"): ("/console/api/timeline", {}, everyone(303)),
    ("GET", "/console/shoppers"): ("/console/shoppers", {}, everyone(303)),
    ("GET", "/console/shoppers/{user_id}"): ("/console/shoppers/sec-user", {}, everyone(303)),
    ("POST", "/console/shoppers/{user_id}/send"): (
        "/console/shoppers/sec-user/send",
        {"data": {"product_id": "p1"}},
        everyone(303),
    ),
    ("POST", "/console/shoppers/{user_id}/cart-rescue"): (
        "/console/shoppers/sec-user/cart-rescue",
        {"data": {"product_id": "p1"}},
        everyone(303),
    ),
    ("POST", "/console/shoppers/{user_id}/referral"): (
        "/console/shoppers/sec-user/referral",
        {"data": {}},
        everyone(303),
    ),
    ("POST", "/console/shoppers/{user_id}/erase"): (
        "/console/shoppers/sec-user/erase",
        {"data": {"confirm": "sec-user"}},
        everyone(303),
    ),
    ("POST", "/console/shoppers/{user_id}/consent"): (
        "/console/shoppers/sec-user/consent",
        {"data": {"channel": "sms", "purpose": "marketing"}},
        everyone(303),
    ),
    ("GET", "/console/channels"): ("/console/channels", {}, everyone(303)),
    ("POST", "/console/channels/{channel}/{action}"): (
        "/console/channels/sms/pause",
        {},
        everyone(303),
    ),
    ("GET", "/console/messages"): ("/console/messages", {}, everyone(303)),
    ("POST", "/console/messages/preview"): ("/console/messages/preview", {}, everyone(303)),
    ("POST", "/console/variants/drafts"): ("/console/variants/drafts", {}, everyone(303)),
    ("GET", "/console/audit"): ("/console/audit", {}, everyone(303)),
    ("GET", "/console/backtests"): ("/console/backtests", {}, everyone(303)),
    ("GET", "/console/segments"): ("/console/segments", {}, everyone(303)),
    ("POST", "/console/api/segments/preview"): (
        "/console/api/segments/preview",
        {"json": {"rules": {"op": "AND", "rules": []}}},
        everyone(303),
    ),
    ("POST", "/console/api/segments/parse"): (
        "/console/api/segments/parse",
        {"json": {"text": "inactive for 30 days"}},
        everyone(303),
    ),
    ("POST", "/console/api/segments"): ("/console/api/segments", {"json": {}}, everyone(303)),
    ("POST", "/console/segments/{segment_id}/lookalike"): (
        "/console/segments/" + "0" * 32 + "/lookalike",
        {"data": {}},
        everyone(303),
    ),
    ("GET", "/console/campaigns"): ("/console/campaigns", {}, everyone(303)),
    ("POST", "/console/campaigns"): ("/console/campaigns", {"data": {}}, everyone(303)),
    ("GET", "/console/campaigns/{campaign_id}"): (
        "/console/campaigns/" + "0" * 32,
        {},
        everyone(303),
    ),
    ("POST", "/console/campaigns/{campaign_id}/cancel"): (
        "/console/campaigns/" + "0" * 32 + "/cancel",
        {},
        everyone(303),
    ),
    ("GET", "/console/{rest:path}"): ("/console/nowhere", {}, everyone(404)),
    ("POST", "/console/{rest:path}"): ("/console/nowhere", {}, everyone(404)),
    **segment_rows(),
}


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, HEAD aside (it mirrors GET)."""
    app = create_app(settings_for("127.0.0.1:1", "http://127.0.0.1:1", "default"))
    found: set[tuple[str, str]] = set()

    def add(path: str, methods) -> None:
        for method in methods or ():
            if method != "HEAD":
                found.add((method, path))

    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                add(context.path, context.methods)
        else:
            add(route.path, getattr(route, "methods", None))
    return found


def test_every_route_has_a_row():
    routes = app_routes()
    assert routes - set(ROWS) == set(), "routes without a row in the security table"
    assert set(ROWS) - routes == set(), "rows for routes that no longer exist"


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("route", sorted(ROWS), ids=lambda r: f"{r[0]} {r[1]}")
def test_endpoint_by_key_kind(http: httpx.Client, route: tuple[str, str], kind: str):
    url, kwargs, expected = ROWS[route]
    kwargs = dict(kwargs)
    if kwargs.get("json") == EVENT:
        kwargs["json"] = event()
    elif kwargs.get("json") == SEGMENT:
        kwargs["json"] = segment_message()
    elif kwargs.get("json") == SEGMENT_BATCH:
        kwargs["json"] = {"batch": [segment_message()]}
    response = http.request(route[0], url, headers=auth(kind), follow_redirects=False, **kwargs)
    assert response.status_code == expected[kind], response.text[:300]
    if response.status_code == 401 and "webhooks" not in route[1]:
        assert response.headers.get("www-authenticate") == "Bearer"


def test_a_key_is_never_taken_from_the_url_except_a_write_key_for_beacons(http: httpx.Client):
    for key in (SERVER_KEY, READ_KEY, ADMIN_KEY):
        assert http.post(f"/v1/track?write_key={key}", json=event()).status_code == 401
        assert http.get(f"/v1/metrics/uplift?{SPAN}&write_key={key}").status_code == 401
    assert http.post(f"/v1/track?write_key={WRITE_KEY}", json=event()).status_code == 202


# --- keys as hashes --------------------------------------------------------------


def test_settings_hold_hashes_only(broker: str, warehouse: str):
    settings = settings_for(broker, warehouse, "default")
    dumped = json.dumps(settings.model_dump(mode="json"), default=str)
    for kind in ("server", "read", "admin", "write"):
        assert KEYS[kind] not in dumped, kind
        assert hash_api_key(KEYS[kind]) in dumped
    # The demo write key is public by design (it is in every page), and a SecretStr.
    assert settings.demo_write_key is not None
    assert "**********" in str(settings.demo_write_key)


def test_keys_are_compared_in_constant_time():
    """Read api/auth.py and schemas/keys.py: one hmac.compare_digest per configured hash."""
    import inspect

    from api import auth
    from schemas import keys

    source = inspect.getsource(keys.key_matches)
    assert "hmac.compare_digest" in source and "break" not in source and "return True" not in source
    assert "key_matches" in inspect.getsource(auth.authenticate)
    assert "==" not in inspect.getsource(auth.authenticate)


# --- injection ---------------------------------------------------------------------

PAYLOADS = [
    "' OR 1=1 --",
    "x'); DROP TABLE events; --",
    "page_view') OR ('1'='1",
    "{steps:String}",
    "page_view) UNION ALL SELECT name, 1, 1 FROM system.tables --",
    "\\' OR user_key != \\'",
    "live' OR run_id != 'live",
    "%' OR '%'='",
    "`events`",
    "a\x00b",
]


def injection_requests(payload: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, url, kwargs, key kind) of every caller value that reaches ClickHouse."""
    q = httpx.QueryParams
    return [
        ("GET", f"/v1/metrics/funnel?{q({'steps': payload})}&{SPAN}", {}, "read"),
        ("GET", f"/v1/metrics/funnel?{q({'steps': f'page_view,{payload}'})}&{SPAN}", {}, "read"),
        ("GET", f"/v1/metrics/funnel?steps=page_view&{q({'breakdown': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/funnel?steps=page_view&{q({'window': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/timeseries?{q({'metric': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/timeseries?metric=events&{q({'name': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/timeseries?metric=revenue&{q({'currency': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/timeseries?metric=events&{q({'interval': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/nudges?{q({'run_id': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/nudges?{q({'from': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/nudges/not_sent?{q({'run_id': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/uplift?{q({'kind': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/dead_letters?{q({'to': payload})}", {}, "read"),
        ("GET", f"/v1/metrics/opt_outs?{q({'interval': payload})}", {}, "read"),
        ("GET", f"/v1/backtests/compare?{q({'a': payload, 'b': 'live'})}", {}, "read"),
        ("GET", f"/v1/backtests/compare?{q({'a': 'live', 'b': payload})}", {}, "read"),
        ("GET", f"/v1/users/{quoted(payload)}/profile", {}, "read"),
        ("GET", f"/v1/admin/audit?{q({'user_key': payload})}", {}, "admin"),
        ("GET", f"/v1/admin/audit?{q({'message_id': payload})}", {}, "admin"),
        ("POST", "/v1/admin/messages/preview", {"json": {"user_id": payload}}, "admin"),
        ("POST", "/v1/tokens/redeem", {"json": {"token": payload, "order_id": payload}}, "server"),
    ]


def quoted(payload: str) -> str:
    return urllib.parse.quote(payload, safe="")


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_injection_payloads_change_nothing_and_leak_nothing(
    http: httpx.Client, clickhouse: Client, seeded: int, payload: str
):
    tables_before = set(clickhouse.query("SHOW TABLES").result_rows)
    for method, url, kwargs, kind in injection_requests(payload):
        response = http.request(method, url, headers=auth(kind), **kwargs)
        assert response.status_code in (200, 404, 409, 422), (url, response.text[:300])
        assert CANARY not in response.text, (url, "canary leaked")
    # Erasing a user named by an injection erases that id only.
    erased = http.delete(f"/v1/users/{quoted(payload)}", headers=auth("admin"))
    assert erased.status_code in (200, 404, 422), erased.text[:300]
    assert CANARY not in erased.text
    assert set(clickhouse.query("SHOW TABLES").result_rows) == tables_before
    count = "SELECT count() FROM events WHERE user_key = {k:String}"
    assert clickhouse.query(count, parameters={"k": CANARY}).result_rows[0][0] == seeded


# --- VIP tokens ----------------------------------------------------------------------


def claims(expires_in: timedelta = timedelta(days=1)) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "jti": uuid.uuid4().hex,
        "sub": "vip-sec",
        "exp": int((now + expires_in).timestamp()),
        "discount_percent": 10.0,
    }


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["discount_percent"] = 90.0
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{header}.{body}.{signature}"


def unsigned(token: str) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"k1"}').decode()
    return f"{header.rstrip('=')}.{token.split('.')[1]}."


GENUINE = TokenKeys("k1", {"k1": TOKEN_SECRET})
BAD_TOKENS = {
    "forged": (
        lambda: sign_token(claims(), TokenKeys("k1", {"k1": "x" * 40})),
        "invalid_signature",
    ),
    "tampered": (lambda: tampered(sign_token(claims(), GENUINE)), "invalid_signature"),
    "expired": (lambda: sign_token(claims(timedelta(seconds=-5)), GENUINE), "expired"),
    "wrong_kid": (
        lambda: sign_token(claims(), TokenKeys("k9", {"k9": TOKEN_SECRET})),
        "unknown_key",
    ),
    "alg_none": (lambda: unsigned(sign_token(claims(), GENUINE)), "malformed"),
    "garbage": (lambda: "a.b.c", "malformed"),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_vip_tokens_are_refused(http: httpx.Client, name: str):
    make, reason = BAD_TOKENS[name]
    response = http.post("/v1/tokens/redeem", json={"token": make()}, headers=auth("server"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["reason"] == reason


def test_a_replayed_vip_token_is_refused(http: httpx.Client):
    token = sign_token(claims(), GENUINE)
    first = http.post("/v1/tokens/redeem", json={"token": token}, headers=auth("server"))
    assert first.status_code == 200, first.text
    again = http.post("/v1/tokens/redeem", json={"token": token}, headers=auth("admin"))
    assert again.status_code == 409
    assert again.json()["detail"]["reason"] == "replayed"


# --- pages --------------------------------------------------------------------------

PAGES = [
    "/demo/",
    "/demo/cart",
    "/demo/checkout",
    "/demo/product/nope",
    "/docs",
    "/redoc",
    "/console/signin",
]


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_security_headers(http: httpx.Client, path: str):
    response = http.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src" in csp
    assert "object-src" in csp or "default-src 'none'" in csp


@pytest.mark.parametrize(
    "path", ["/tracker.js", "/demo/assets/demo.js", "/console/static/console.js", "/openapi.json"]
)
def test_scripts_and_documents_are_not_sniffed(http: httpx.Client, path: str):
    assert http.get(path).headers["x-content-type-options"] == "nosniff"


def test_demo_pages_escape_what_they_render(http: httpx.Client):
    attack = "<script>alert(1)</script>"
    response = http.get(f"/demo/product/{quoted(attack)}")
    assert response.status_code == 404
    assert "<script>alert" not in response.text
    # Every script of the pages is an external file of this origin: no inline code.
    page = http.get("/demo/").text
    assert "<script>" not in page and "onclick" not in page.lower()
    # The embedded write key is escaped into an attribute.
    assert f'data-write-key="{WRITE_KEY}"' in page or WRITE_KEY in page
