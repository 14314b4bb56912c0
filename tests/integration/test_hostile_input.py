"""Hostile values against every route, with the right key: never a 5xx.

The value classes a probe of the running stack turned into 500s: digits that are
not ASCII ("²", "١٢٣"), digit strings of thousands of characters, integers beyond
64 bits, ``NaN``/``Infinity``/``1e309`` in JSON bodies, and VIP tokens whose
claims have the wrong type. Each goes into every query parameter, path parameter,
header parameter and body leaf of every operation of the OpenAPI document (bodies
from the security table's rows, richer where a route nests). One summary line
says how many requests were made, how many answered 5xx, and which.

And the work a request may cause before it is authenticated: a body is never read
before the key is checked, and never parsed past its route class's cap.
"""

import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from clickhouse_connect.driver.client import Client

from schemas.inbound import whatsapp_status, whatsapp_text_message, whatsapp_webhook
from schemas.provider_refs import encode_ref
from schemas.tokens import sign_token
from tests import support
from tests.collector_server import SERVER_KEY, api_client, event
from tests.integration.test_security import ADMIN_KEY, GENUINE, KEYS, ROWS, settings_for

# Query, path and header values.
HOSTILE_TEXT = [
    "\xb2",  # "²": isdigit() and int() disagree
    "\u0661\u0662\u0663",  # Arabic-Indic digits
    "\uff11\uff12\uff13",  # full-width digits
    "9" * 5000,  # int() refuses more than 4,300 digits
    "18446744073709551616",  # 2**64
    "-9223372036854775809",  # below Int64
    "999999999999999",  # epoch ms in the year 33658
    "1e309",
    "NaN",
    "-Infinity",
]
# JSON tokens put in place of a body's leaf (Python's json reads the first five).
HOSTILE_JSON = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e309",
    b"-1e309",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1" + b"0" * 40,
    b"1" + b"0" * 400,  # an int Python reads but cannot make a float of
    b"9" * 5000,
    b'"\xc2\xb2"',
    b'"' + b"9" * 5000 + b'"',
]
_LEAF = "__hostile_leaf__"
WHATSAPP_WEBHOOK = ("POST", "/v1/webhooks/whatsapp")
TWILIO_WEBHOOK = ("POST", "/v1/webhooks/twilio")
# Twilio's form fields; every value is varied (signed as Twilio signs, so they are read).
TWILIO_FORM = {
    "MessageSid": "SM" + "1" * 32,
    "MessageStatus": "undelivered",
    "ErrorCode": "30003",
    "From": "+15005550006",
    "To": "+15550100000",
    "Body": "hi",
}


def segment_rules() -> dict[str, Any]:
    return {
        "op": "AND",
        "rules": [
            {"field": "last_seen", "op": "inactive_days", "value": 30},
            {"field": "total_spend", "op": "between", "value": [10, 5000]},
            {"field": "country", "op": "in", "value": ["IN", "DE"]},
        ],
    }


def rich_bodies(segment_id: str) -> dict[tuple[str, str], Any]:
    """Bodies that reach every nested field of the routes whose table row sends ``{}``."""
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {
        ("POST", "/v1/segments"): {"name": "hostile", "description": "d", "rules": segment_rules()},
        ("POST", "/v1/segments/parse"): {"text": "inactive for 30 days"},
        ("POST", "/v1/templates/{kind}/drafts"): {"count": 2, "brief": "friendly"},
        ("POST", "/v1/campaigns"): {
            "name": "hostile",
            "segment_id": segment_id,
            "product": "p1",
            "discount_percent": 15,
            "channels": ["whatsapp"],
            "holdout_share": 0.1,
            "schedule": {
                "send_at": soon,
                "quiet_hours": {"start": 21, "end": 8},
                "timezone": "UTC",
                "send_time": "best_hour",
            },
        },
        ("POST", "/v1/admin/flows/cart-rescue"): {
            "user_id": "hostile-user",
            "items": [{"product_id": "p1", "quantity": 2, "price": 10.5}],
            "discount_percent": 10,
        },
        ("POST", "/v1/admin/messages/send"): {
            "user_id": "hostile-user",
            "product_id": "p1",
            "discount_percent": 10,
        },
        ("POST", "/v1/admin/messages/preview"): {
            "kind": "cart_rescue",
            "product": "p1",
            "discount_percent": 10,
        },
        ("POST", "/v1/tokens/redeem"): {"token": "a.b.c", "order_id": "o-1"},
        ("PUT", "/v1/products"): {
            "products": [
                {
                    "product_id": "hostile-p1",
                    "name": "Shoe",
                    "price": 10.5,
                    "currency": "EUR",
                    "image_url": "https://cdn.example/p1.png",
                    "url": "https://shop.example/p1",
                    "category": "shoes",
                }
            ]
        },
        ("POST", "/v1/track"): event(
            "add_to_cart", properties={"product_id": "p", "quantity": 1, "price": 1.5}
        ),
        # Meta's notification: a status of one of our messages and a shopper's text.
        WHATSAPP_WEBHOOK: orjson.loads(
            whatsapp_webhook(
                statuses=[
                    whatsapp_status(
                        "wamid.1",
                        "failed",
                        datetime.now(UTC),
                        "+15550100000",
                        encode_ref("m1", "u1", "campaign"),
                        error=(131026, "undeliverable"),
                    )
                ],
                messages=[
                    whatsapp_text_message("+15550100000", "hi", "wamid.2", datetime.now(UTC))
                ],
            )
        ),
        **segment_bodies(),
    }


def segment_bodies() -> dict[tuple[str, str], Any]:
    """Segment's calls: a message with every field any call reads, and a batch of them."""
    now = datetime.now(UTC).isoformat()
    message = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-hostile",
        "anonymousId": "a-hostile",
        "userId": "u-hostile",
        "previousId": "p-hostile",
        "groupId": "g-hostile",
        "timestamp": now,
        "sentAt": now,
        "properties": {
            "order_id": "o-1",
            "total": 10.5,
            "currency": "EUR",
            "url": "https://shop.example/",
            "products": [{"product_id": "p1", "quantity": 1, "price": 10.5}],
        },
        "traits": {"plan": "x"},
        "context": {"page": {"url": "https://shop.example/"}, "location": {"country": "DE"}},
        "integrations": {"intentflow": True},
    }
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/segment/v1/batch"): {
            "batch": [message],
            "context": {"timezone": "UTC"},
            "sentAt": now,
        }
    }
    for call in ("track", "identify", "page", "screen", "alias", "group"):
        bodies[("POST", f"/segment/v1/{call}")] = message
    return bodies


def key_for(route: tuple[str, str]) -> str | None:
    """The strongest key the security table admits for the route (None: no key needed)."""
    expected = ROWS[route][2]
    for kind in ("admin", "read", "server", "write"):
        if expected[kind] != 401:
            return KEYS[kind]
    return None


def leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def replaced(value: Any, path: tuple, token: bytes) -> bytes:
    """``value`` as JSON with the leaf at ``path`` replaced by the raw ``token``."""
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if path:
        target[path[-1]] = _LEAF
    else:
        copy = _LEAF
    return orjson.dumps(copy).replace(f'"{_LEAF}"'.encode(), token)


@pytest.fixture(scope="module")
def http(broker: str, warehouse: str, clickhouse: Client) -> Iterator[httpx.Client]:
    """The API with the security table's keys, on this module's database."""
    with api_client(settings_for(broker, warehouse, clickhouse.database)) as client:
        yield client


@pytest.fixture(scope="module")
def segment_id(http: httpx.Client) -> str:
    created = http.post(
        "/v1/segments",
        json={"name": "hostile base", "rules": segment_rules()},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    return created.json()["segment_id"]


def hostile_requests(
    openapi: dict, segment_id: str
) -> Iterator[tuple[tuple[str, str], str, dict, str]]:
    """(route, url, request kwargs, what was varied) for every operation and value class."""
    bodies = rich_bodies(segment_id)
    for route, (url, kwargs, _) in sorted(ROWS.items()):
        method, template = route
        operation = openapi["paths"].get(template, {}).get(method.lower())
        if operation is None:
            continue  # not in the API document (pages, docs)
        base_path, _, base_query = url.partition("?")
        query = dict(urllib.parse.parse_qsl(base_query))
        body = bodies.get(route, kwargs.get("json"))
        for parameter in operation.get("parameters", []):
            name, where = parameter["name"], parameter["in"]
            for value in HOSTILE_TEXT:
                if where == "query":
                    varied = urllib.parse.urlencode({**query, name: value})
                    yield route, f"{base_path}?{varied}", {"json": body}, f"?{name}"
                elif where == "path":
                    path = base_path_for(template, base_path, name, value)
                    yield route, f"{path}?{base_query}", {"json": body}, f"{{{name}}}"
                elif where == "header":
                    # The varied header is a signature: refused, never a 5xx.
                    if route == TWILIO_WEBHOOK:
                        request = {"data": TWILIO_FORM}
                    else:
                        request = {"content": orjson.dumps(body)}
                    headers = {name: header(value)}
                    if route != TWILIO_WEBHOOK:
                        headers["Content-Type"] = "application/json"
                    yield route, url, {**request, "headers": headers}, name
        if route == TWILIO_WEBHOOK:
            for field in TWILIO_FORM:
                for value in HOSTILE_TEXT:
                    form = {**TWILIO_FORM, field: value}
                    yield route, url, {"data": form, "sign": "twilio"}, f"form.{field}"
            continue
        if body is None or body == "__event__":
            continue
        for leaf in leaves(body):
            for token in HOSTILE_JSON:
                content = replaced(body, leaf, token)
                extra = {"Content-Type": "application/json"}
                if route == WHATSAPP_WEBHOOK:
                    extra = support.meta_signed(content)
                what = "body." + ".".join(map(str, leaf))
                yield route, url, {"content": content, "headers": extra}, what
        if route == ("POST", "/v1/segments/parse"):
            for number in HOSTILE_TEXT:
                phrase = {"text": f"inactive for {number} days"[:500]}
                yield route, url, {"json": phrase}, "body.text (a phrase)"


def header(value: str) -> bytes:
    """As a client would send it: one byte per character where it can (the server reads
    header bytes as Latin-1, so b"\\xb2" arrives as "²"), else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def base_path_for(template: str, concrete: str, name: str, value: str) -> str:
    """``concrete`` with the segment of path parameter ``name`` replaced by ``value``."""
    parts, filled = template.split("/"), concrete.split("/")
    return "/".join(
        urllib.parse.quote(value, safe="") if part == f"{{{name}}}" else given
        for part, given in zip(parts, filled, strict=True)
    )


def test_hostile_values_on_every_route_never_answer_5xx(http: httpx.Client, segment_id: str):
    openapi = http.get("/openapi.json").json()
    started = time.monotonic()
    requests = 0
    findings: list[str] = []
    routes = set()
    for route, url, kwargs, what in hostile_requests(openapi, segment_id):
        key = key_for(route)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        if route == TWILIO_WEBHOOK and "data" not in kwargs:
            kwargs = {"data": TWILIO_FORM}
        if (
            route == TWILIO_WEBHOOK
            and kwargs.pop("sign", "twilio") == "twilio"
            and ("X-Twilio-Signature" not in headers)
        ):
            # Signed over the URL as sent (httpx's encoding of the varied query).
            called = str(httpx.URL(str(http.base_url).rstrip("/") + url))
            headers.update(support.twilio_signed(called, kwargs["data"]))
        requests += 1
        routes.add(route)
        try:
            response = http.request(route[0], url, headers=headers, **kwargs)
        except httpx.TransportError as exc:  # the server dropped the connection
            findings.append(f"{type(exc).__name__} {route[0]} {route[1]} {what}")
            continue
        # /v1/health answers a documented 503 here: no worker runs in this test.
        allowed_5xx = route == ("GET", "/v1/health") and response.status_code == 503
        if response.status_code >= 500 and not allowed_5xx:
            findings.append(f"{response.status_code} {route[0]} {route[1]} {what}")
        # Signed provider bodies must get past the signature, or they test nothing.
        signed_body = route in (WHATSAPP_WEBHOOK, TWILIO_WEBHOOK) and what.startswith(
            ("body.", "form.", "?ref")
        )
        if signed_body and response.status_code == 401:
            findings.append(f"401 {route[0]} {route[1]} {what}: the signature was not accepted")
    elapsed = time.monotonic() - started
    print(
        f"\nhostile input: {requests} requests over {len(routes)} routes in {elapsed:.1f}s, "
        f"{len(findings)} 5xx, findings: {sorted(set(findings)) or 'none'}"
    )
    # Every operation that takes a parameter or a body was driven.
    takes_input = {
        (method.upper(), path)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if operation.get("parameters") or operation.get("requestBody")
    }
    assert takes_input - routes == set()
    assert findings == []


# --- VIP tokens whose claims have the wrong type ------------------------------------

WRONG_CLAIMS = {
    "jti_number": {"jti": 12345},
    "jti_list": {"jti": ["x"]},
    "jti_object": {"jti": {"a": 1}},
    "jti_empty": {"jti": ""},
    "jti_long": {"jti": "j" * 200},
    "sub_number": {"sub": 42},
    "sub_null": {"sub": None},
    "sub_object": {"sub": {"a": 1}},
    "exp_text": {"exp": "tomorrow"},
    "exp_nan": {"exp": float("nan")},
    "exp_infinity": {"exp": float("inf")},
    "exp_beyond_64_bits": {"exp": 10**30},
    "exp_bool": {"exp": True},
    "discount_text": {"discount_percent": "ten"},
    "discount_list": {"discount_percent": [10]},
    "discount_nan": {"discount_percent": float("nan")},
    "discount_infinity": {"discount_percent": float("inf")},
    "discount_beyond_64_bits": {"discount_percent": 10**30},
    "discount_negative": {"discount_percent": -5},
    "discount_over_100": {"discount_percent": 500},
}


@pytest.mark.parametrize("case", sorted(WRONG_CLAIMS))
def test_a_token_with_a_wrong_typed_claim_is_refused_before_it_is_redeemed(
    http: httpx.Client, clickhouse: Client, case: str
):
    claims = {
        "jti": uuid.uuid4().hex,
        "sub": "vip-hostile",
        "exp": int((datetime.now(UTC) + timedelta(days=1)).timestamp()),
        "discount_percent": 10.0,
        **WRONG_CLAIMS[case],
    }
    token = sign_token(claims, GENUINE)
    before = clickhouse.command("SELECT count() FROM token_redemptions")

    response = http.post(
        "/v1/tokens/redeem",
        json={"token": token},
        headers={"Authorization": f"Bearer {SERVER_KEY}"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"]["reason"] in ("malformed", "expired")
    # Refused before the redemption was recorded: the token is not used up.
    assert clickhouse.command("SELECT count() FROM token_redemptions") == before


# --- the providers' signature headers -------------------------------------------------


@pytest.mark.parametrize(
    "signature", ["\xb2", "\u0661\u0662", "9" * 5000, "sha256=", "sha256=zz", "sha1=00"]
)
def test_a_signature_header_that_is_not_the_providers_is_401(http: httpx.Client, signature: str):
    body = orjson.dumps(rich_bodies("0" * 32)[WHATSAPP_WEBHOOK])
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": header(signature)}
    response = http.post("/v1/webhooks/whatsapp", content=body, headers=headers)
    assert response.status_code == 401, response.text
    response = http.post(
        "/v1/webhooks/twilio", data=TWILIO_FORM, headers={"X-Twilio-Signature": header(signature)}
    )
    assert response.status_code == 401, response.text


# --- no expensive work before authentication ------------------------------------------

MIB = 1 << 20


def million_keys() -> bytes:
    """About 11 MiB of JSON: one object with a million keys (2.5 s of CPU to parse here)."""
    return b"{" + b",".join(b'"k%07d":1' % n for n in range(1_000_000)) + b"}"


def timed_post(http: httpx.Client, url: str, body: bytes, headers: dict) -> tuple[int, float]:
    """(status, CPU seconds of this process, which runs the API) of one POST."""
    cpu = time.process_time()
    response = http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    return response.status_code, time.process_time() - cpu


@pytest.mark.parametrize(
    "url", ["/v1/segments", "/v1/campaigns", "/v1/tokens/redeem", "/v1/admin/messages/preview"]
)
def test_a_big_body_without_a_key_is_401_before_it_is_read(http: httpx.Client, url: str):
    body = million_keys()
    assert len(body) > 10 * MIB
    status, cpu_s = timed_post(http, url, body, {})
    print(f"\n{url}: {len(body) / MIB:.1f} MiB without a key -> {status} in {cpu_s:.3f}s CPU")
    assert status == 401
    # Parsing it cost 0.7 s (6.7 s with a key); sending and discarding it, ~10 ms.
    assert cpu_s < 0.25


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("/v1/segments", ADMIN_KEY),
        ("/v1/tokens/redeem", SERVER_KEY),
        ("/v1/track", KEYS["write"]),
        ("/segment/v1/batch", KEYS["write"]),
    ],
)
def test_a_body_over_its_cap_is_413_before_it_is_parsed(http: httpx.Client, url: str, key: str):
    body = million_keys()
    status, cpu_s = timed_post(http, url, body, {"Authorization": f"Bearer {key}"})
    print(f"\n{url}: {len(body) / MIB:.1f} MiB with a key -> {status} in {cpu_s:.3f}s CPU")
    assert status == 413
    assert cpu_s < 0.25


def test_a_segment_body_without_a_header_key_is_read_only_within_its_cap(http: httpx.Client):
    """Segment's SDKs may put the key in the body (writeKey), so a keyless body is read
    to find it — but never past the collector's cap: this one is 413 unread."""
    body = million_keys()
    status, cpu_s = timed_post(http, "/segment/v1/batch", body, {})
    assert (status, cpu_s < 0.25) == (413, True), cpu_s


def test_a_streamed_body_over_its_cap_is_413_while_it_streams(http: httpx.Client):
    """No Content-Length (chunked): counted as it arrives, refused once past the cap."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", "rules": {"op": "AND", "rules": ['
        for _ in range(200):
            yield b'{"field": "country", "op": "=", "value": "IN"},' * 100

    response = http.post(
        "/v1/segments",
        content=chunks(),
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize("url", ["/v1/webhooks/whatsapp", "/v1/webhooks/twilio"])
def test_a_webhook_is_refused_on_its_headers_before_its_body_is_read(http: httpx.Client, url):
    """A webhook has no key, its signature covers the body: the cap (64 KiB) comes first,
    then the signature header (present), and only then is the body read."""
    body = million_keys()
    status, cpu_s = timed_post(http, url, body, {})
    assert (status, cpu_s < 0.25) == (413, True), cpu_s
    response = http.post(url, content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and "missing" in response.text
    signed = {"X-Hub-Signature-256": support.meta_signed(body)["X-Hub-Signature-256"]}
    signed["X-Twilio-Signature"] = "x"
    status, cpu_s = timed_post(http, url, body, signed)
    assert (status, cpu_s < 0.25) == (413, True), cpu_s


def test_every_route_checks_its_key_and_body_cap_before_its_body():
    from fastapi.routing import APIRoute

    from api.main import ROUTERS
    from api.routing import GuardedRoute

    unguarded = [
        f"{sorted(route.methods)} {route.path}"
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and not isinstance(route, GuardedRoute)
    ]
    assert unguarded == [], "routers must use APIRouter(route_class=GuardedRoute)"
