"""Contract tests of the providers' wire protocols (issue 16).

The channels (pipeline/dispatch/channels.py) against Meta's and Twilio's documented
shapes and retry rules; the simulator (pipeline/local/provider_sim.py) as their
stand-in, in-process; the API's webhooks (api/routes/webhooks.py) with Meta's
X-Hub-Signature-256 and Twilio's X-Twilio-Signature as Twilio's own library computes
and validates it. No network, no broker: the providers are httpx mock transports
or the simulator's ASGI app, and the API's event producer is a recorder.
"""

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
import yaml
from prometheus_client import REGISTRY
from tenacity import wait_none
from twilio.request_validator import RequestValidator

from api.main import create_app
from api.settings import ApiSettings
from pipeline.dispatch.channels import (
    Outgoing,
    SendResult,
    TwilioSmsChannel,
    WhatsAppChannel,
)
from pipeline.dispatch.settings import ProviderSimSettings
from pipeline.domain.rules import default_rules
from pipeline.local.provider_sim import Accepted, create_sim_app
from pipeline.local.simulate import preferred_hour, read_chance
from schemas.inbound import whatsapp_status, whatsapp_text_message, whatsapp_webhook
from schemas.messages import Receipt
from schemas.provider_refs import MAX_REF_CHARS, decode_ref, encode_ref
from schemas.templates import RenderedMessage, TemplateSend, WhatsAppCard

PHONE = "+14155550100"
MID = "0123456789abcdef0123456789abcdef"
TOKEN, APP_SECRET, VERIFY = "meta-access-token", "meta-app-secret", "meta-verify-token"
SID, AUTH = "AC" + "1" * 32, "twilio-auth-token"
PHONE_ID, SENDER = "106540352242922", "+15005550006"
PUBLIC = "https://api.example.com"

CARD = WhatsAppCard(
    image_url="https://shop.example/images/p1.jpg",
    title="Your cart misses you",
    body="Hi there, your Red shoes is still in your cart.",
    button_text="Complete my order",
    button_url="https://shop.example/cart?utm_message_id=" + MID,
)
TEMPLATE = TemplateSend(
    name="intentflow_cart_rescue",
    language="en_US",
    category="MARKETING",
    header_image_url="https://shop.example/images/p1.jpg",
    body_parameters=("there", "Red shoes", "10"),
    button_url_suffix="tok123",
)


def outgoing(*, window_open=False, template=TEMPLATE, kind="cart_rescue") -> Outgoing:
    rendered = RenderedMessage(
        MID, kind, CARD, "Hi, 10% off: https://shop.example/cart?m=1", CARD.button_url, template
    )
    return Outgoing(MID, kind, "user-1", PHONE, rendered, window_open=window_open)


def whatsapp(transport: httpx.AsyncBaseTransport, attempts=4) -> WhatsAppChannel:
    return WhatsAppChannel(
        httpx.AsyncClient(transport=transport),
        api_url="https://graph.example",
        api_version="v21.0",
        phone_number_id=PHONE_ID,
        access_token=TOKEN,
        attempts=attempts,
        wait=wait_none(),
    )


def twilio(transport: httpx.AsyncBaseTransport, attempts=4) -> TwilioSmsChannel:
    return TwilioSmsChannel(
        httpx.AsyncClient(transport=transport),
        api_url="https://twilio.example",
        account_sid=SID,
        auth_token=AUTH,
        sender=SENDER,
        public_api_url=PUBLIC,
        attempts=attempts,
        wait=wait_none(),
    )


class Provider:
    """A mock provider answering from a script, one entry per request (the last repeats)."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def graph_error(code: int, status: int = 400, subcode: int | None = None) -> httpx.Response:
    error: dict[str, Any] = {
        "message": f"(#{code}) message",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEf",
    }
    if subcode:
        error["error_subcode"] = subcode
    return httpx.Response(status, json={"error": error})


WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
META_OK = httpx.Response(
    200,
    json={
        "messaging_product": "whatsapp",
        "contacts": [{"input": "14155550100", "wa_id": "14155550100"}],
        "messages": [{"id": WAMID, "message_status": "accepted"}],
    },
)


# --- the reference --------------------------------------------------------------------


def test_the_reference_round_trips_and_fits_metas_512_chars():
    ref = encode_ref(MID, "user-ü" * 40, "vip_upgrade")
    assert len(ref) <= MAX_REF_CHARS
    found = decode_ref(ref)
    assert (found.message_id, found.user_key, found.kind) == (MID, "user-ü" * 40, "vip_upgrade")
    with pytest.raises(ValueError):
        encode_ref(MID, "u" * 400, "cart_rescue")


@pytest.mark.parametrize(
    "ref", [None, "", "if1.", "if1.!!!", "x" * 600, "if1.WyJhIl0", "wamid.1", 42]
)
def test_a_reference_that_is_not_ours_decodes_to_none(ref):
    assert decode_ref(ref) is None


# --- WhatsApp Cloud API ---------------------------------------------------------------


async def test_outside_the_window_a_template_goes_out_in_metas_shape():
    provider = Provider(META_OK)
    result = await whatsapp(provider.transport).send(outgoing())
    assert result == SendResult(provider_message_id=WAMID)
    [request] = provider.requests
    assert request.url == f"https://graph.example/v21.0/{PHONE_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = orjson.loads(request.content)
    ref = body.pop("biz_opaque_callback_data")
    assert decode_ref(ref).message_id == MID
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "14155550100",
        "type": "template",
        "template": {
            "name": "intentflow_cart_rescue",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "header",
                    "parameters": [
                        {"type": "image", "image": {"link": "https://shop.example/images/p1.jpg"}}
                    ],
                },
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "there"},
                        {"type": "text", "text": "Red shoes"},
                        {"type": "text", "text": "10"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "tok123"}],
                },
            ],
        },
    }


async def test_inside_the_window_an_interactive_cta_url_message_goes_out():
    provider = Provider(META_OK)
    await whatsapp(provider.transport).send(outgoing(window_open=True))
    body = orjson.loads(provider.requests[0].content)
    assert body["type"] == "interactive"
    assert body["interactive"] == {
        "type": "cta_url",
        "header": {"type": "image", "image": {"link": CARD.image_url}},
        "body": {"text": f"*{CARD.title}*\n\n{CARD.body}"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": CARD.button_text, "url": CARD.button_url},
        },
    }


async def test_outside_the_window_without_a_template_nothing_is_sent():
    provider = Provider(META_OK)
    result = await whatsapp(provider.transport).send(outgoing(template=None))
    assert result == SendResult(error="no_template")
    assert provider.requests == []


async def test_a_graph_error_is_a_final_refusal_with_metas_code():
    provider = Provider(graph_error(131026))
    result = await whatsapp(provider.transport).send(outgoing())
    assert result == SendResult(error="131026")
    assert len(provider.requests) == 1


@pytest.mark.parametrize(
    "refusal",
    [
        graph_error(130429, 429),
        graph_error(131056, 400),
        graph_error(80007, 400),
        graph_error(4, 400),
        graph_error(131048, 400),
        graph_error(131000, 500),
        httpx.Response(503, text="Service Unavailable"),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no connection"),
    ],
)
async def test_what_certainly_did_not_take_is_retried(refusal):
    provider = Provider(refusal, refusal, META_OK)
    result = await whatsapp(provider.transport).send(outgoing())
    assert result == SendResult(provider_message_id=WAMID)
    assert len(provider.requests) == 3


async def test_retries_give_up_as_provider_unavailable():
    provider = Provider(graph_error(130429, 429))
    result = await whatsapp(provider.transport, attempts=3).send(outgoing())
    assert result == SendResult(error="provider_unavailable")
    assert len(provider.requests) == 3


@pytest.mark.parametrize(
    "lost",
    [
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.WriteTimeout("stalled mid-request"),
    ],
)
async def test_a_request_that_may_have_taken_is_never_resent(lost):
    provider = Provider(lost, META_OK)
    result = await whatsapp(provider.transport).send(outgoing())
    assert result == SendResult(unknown=True)
    assert len(provider.requests) == 1
    provider = Provider(lost, META_OK)
    assert (await twilio(provider.transport).send(outgoing())).unknown
    assert len(provider.requests) == 1


# --- Twilio Messages API --------------------------------------------------------------

TWILIO_OK = httpx.Response(
    201,
    json={
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": "Hi",
        "direction": "outbound-api",
        "sid": "SM" + "a" * 32,
        "status": "queued",
        "to": PHONE,
        "from": SENDER,
    },
)


def twilio_error(code: int, status: int) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "code": code,
            "message": "message",
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


async def test_an_sms_goes_to_twilio_as_a_form_with_basic_auth_and_a_status_callback():
    provider = Provider(TWILIO_OK)
    result = await twilio(provider.transport).send(outgoing())
    assert result == SendResult(provider_message_id="SM" + "a" * 32)
    [request] = provider.requests
    assert request.url == f"https://twilio.example/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Authorization"] == httpx.BasicAuth(SID, AUTH)._auth_header
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(parse_qsl(request.content.decode()))
    callback = form.pop("StatusCallback")
    assert form == {"To": PHONE, "From": SENDER, "Body": outgoing().rendered.sms}
    parts = urlsplit(callback)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PUBLIC}/v1/webhooks/twilio"
    assert decode_ref(dict(parse_qsl(parts.query))["ref"]).user_key == "user-1"


async def test_a_twilio_error_is_final_and_its_429_is_retried():
    provider = Provider(twilio_error(21211, 400))
    assert await twilio(provider.transport).send(outgoing()) == SendResult(error="21211")
    assert len(provider.requests) == 1
    provider = Provider(twilio_error(20429, 429), httpx.Response(500), TWILIO_OK)
    assert (await twilio(provider.transport).send(outgoing())).provider_message_id
    assert len(provider.requests) == 3


# --- the simulator, in-process --------------------------------------------------------


class Sim:
    """The simulator's app and a recorder standing in for our API (webhooks, link taps)."""

    def __init__(self, **behaviour: Any) -> None:
        self.settings = ProviderSimSettings(
            webhook_url="http://api.test",
            whatsapp_phone_number_id=PHONE_ID,
            whatsapp_access_token=TOKEN,
            whatsapp_app_secret=APP_SECRET,
            twilio_account_sid=SID,
            twilio_auth_token=AUTH,
            twilio_from=SENDER,
            sim_delay_s=0,
            **behaviour,
        )
        self.app = create_sim_app(self.settings)
        self.simulator = self.app.state.simulator
        self.received: list[httpx.Request] = []
        self._arrived = asyncio.Event()
        self.simulator._http = httpx.AsyncClient(transport=httpx.MockTransport(self._api))
        self.transport = httpx.ASGITransport(app=self.app)

    def _api(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        self._arrived.set()
        if request.method == "GET":
            return httpx.Response(302, headers={"Location": "https://shop.example/"})
        return httpx.Response(200, json={})

    def whatsapp(self) -> WhatsAppChannel:
        channel = whatsapp(self.transport)
        channel._url = f"http://sim/v21.0/{PHONE_ID}/messages"
        return channel

    def twilio(self) -> TwilioSmsChannel:
        channel = twilio(self.transport)
        channel._url = f"http://sim/2010-04-01/Accounts/{SID}/Messages.json"
        return channel

    async def settle(self, condition: Callable[[], bool], timeout_s: float = 5) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    async def listing(self) -> dict[str, Any]:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://sim") as http:
            return (await http.get("/v1/messages")).json()


async def test_the_sim_takes_a_template_and_posts_metas_signed_statuses_then_taps_the_link():
    sim = Sim(sim_read_rate=1.0, sim_click_rate=1.0)
    result = await sim.whatsapp().send(outgoing())
    assert result.provider_message_id.startswith("wamid.")
    await sim.settle(lambda: len(sim.received) == 4)
    posts = [r for r in sim.received if r.method == "POST"]
    statuses = []
    for post in posts:
        assert post.url == "http://api.test/v1/webhooks/whatsapp"
        expected = (
            "sha256=" + hmac.new(APP_SECRET.encode(), post.content, hashlib.sha256).hexdigest()
        )
        assert post.headers["X-Hub-Signature-256"] == expected
        [status] = orjson.loads(post.content)["entry"][0]["changes"][0]["value"]["statuses"]
        statuses.append(status)
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert {s["id"] for s in statuses} == {result.provider_message_id}
    assert decode_ref(statuses[0]["biz_opaque_callback_data"]).message_id == MID
    assert statuses[0]["pricing"]["category"] == "marketing"
    [tap] = [r for r in sim.received if r.method == "GET"]
    assert str(tap.url) == "http://api.test/v1/r/tok123"
    [listed] = (await sim.listing())["messages"]
    assert (listed["message_id"], listed["channel"], listed["to_masked"]) == (
        MID,
        "whatsapp",
        "+1 ••••••0100",
    )
    assert listed["webhooks"] == ["sent:200", "delivered:200", "read:200", "clicked:302"]


async def test_with_a_preferred_hour_seed_shoppers_read_as_their_hidden_hour_has_it():
    seeded, plain = Sim(sim_preferred_hour_seed=7), Sim(sim_read_rate=0.8)
    message = Accepted("p1", "whatsapp", MID, "shopper-1", "campaign", "+1", {}, "")
    hour = preferred_hour(7, "shopper-1")
    at_best = datetime(2026, 3, 2, hour, 30, tzinfo=UTC)
    far = at_best + timedelta(hours=12)
    assert seeded.simulator.read_rate(message, 0.8, at_best) == read_chance(hour, hour) == 0.65
    assert seeded.simulator.read_rate(message, 0.8, far) == 0.15
    assert plain.simulator.read_rate(message, 0.8, at_best) == 0.8


async def test_the_sim_has_no_idempotency_every_post_is_a_new_message():
    sim = Sim(sim_read_rate=0.0)
    first = await sim.whatsapp().send(outgoing())
    second = await sim.whatsapp().send(outgoing())
    assert first.provider_message_id != second.provider_message_id
    assert len((await sim.listing())["messages"]) == 2


async def test_the_sim_refuses_free_form_outside_the_window_until_the_shopper_writes():
    sim = Sim(sim_read_rate=0.0)
    assert await sim.whatsapp().send(outgoing(window_open=True)) == SendResult(error="131047")
    async with httpx.AsyncClient(transport=sim.transport, base_url="http://sim") as http:
        answer = await http.post("/v1/whatsapp/inbound", json={"from": PHONE, "text": "hi"})
    assert answer.json()["webhook_status"] == 200
    result = await sim.whatsapp().send(outgoing(window_open=True))
    assert result.provider_message_id


@pytest.mark.parametrize(
    ("template", "code"),
    [
        (TemplateSend("not_approved", "en_US", "MARKETING", None, (), None), "132001"),
        (
            TemplateSend("intentflow_cart_rescue", "en_US", "MARKETING", "https://i", ("a",), "t"),
            "132000",
        ),
    ],
)
async def test_the_sim_checks_templates_against_the_approved_ones(template, code):
    sim = Sim()
    assert await sim.whatsapp().send(outgoing(template=template)) == SendResult(error=code)


async def test_the_sim_approves_a_variants_own_whatsapp_template(tmp_path):
    raw = default_rules().model_dump()
    raw["dispatch"]["templates"]["cart_rescue"]["variants"] = [
        {"name": "plain"},
        {"name": "urgent", "whatsapp_template": "intentflow_cart_rescue_urgent"},
    ]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(raw))
    sim = Sim(rules=rules)
    urgent = replace(TEMPLATE, name="intentflow_cart_rescue_urgent")
    assert (await sim.whatsapp().send(outgoing(template=urgent))).provider_message_id
    unknown = replace(TEMPLATE, name="intentflow_cart_rescue_calm")
    assert await sim.whatsapp().send(outgoing(template=unknown)) == SendResult(error="132001")


async def test_the_sim_checks_credentials_and_throttles_in_each_providers_shape():
    sim = Sim()
    wrong = sim.whatsapp()
    wrong._headers = {"Authorization": "Bearer nope"}
    assert await wrong.send(outgoing()) == SendResult(error="190")
    sms = sim.twilio()
    sms._auth = httpx.BasicAuth(SID, "nope")
    assert await sms.send(outgoing()) == SendResult(error="20003")
    throttled = Sim(sim_transient_error_rate=1.0)
    assert await throttled.whatsapp().send(outgoing()) == SendResult(error="provider_unavailable")
    assert await throttled.twilio().send(outgoing()) == SendResult(error="provider_unavailable")
    assert throttled.simulator.transient_errors == 8  # 4 attempts each, all 429


async def test_the_sim_posts_twilio_status_callbacks_signed_as_twilio_signs_them():
    sim = Sim(sim_read_rate=0.0, sim_fail_rate=1.0)
    result = await sim.twilio().send(outgoing())
    assert result.provider_message_id.startswith("SM")
    await sim.settle(lambda: len(sim.received) == 2)
    validator = RequestValidator(AUTH)
    statuses = []
    for post in sim.received:
        assert str(post.url).startswith(f"{PUBLIC}/v1/webhooks/twilio?ref=")
        form = dict(parse_qsl(post.content.decode()))
        assert validator.validate(str(post.url), form, post.headers["X-Twilio-Signature"])
        assert not validator.validate(
            str(post.url), {**form, "Body": "x"}, post.headers["X-Twilio-Signature"]
        )
        statuses.append((form["MessageSid"], form["MessageStatus"], form.get("ErrorCode")))
    sid = result.provider_message_id
    assert statuses == [(sid, "sent", None), (sid, "undelivered", "30003")]


# --- the API's webhooks ---------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    async def publish(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        self.published.append((topic, records))


class FakeResources:
    def __init__(self) -> None:
        self.events = Recorder()


@pytest.fixture
def api(monkeypatch) -> tuple[httpx.AsyncClient, FakeResources, list]:
    settings = ApiSettings(
        env="test",
        public_api_url=PUBLIC,
        whatsapp_app_secret=APP_SECRET,
        whatsapp_verify_token=VERIFY,
        twilio_auth_token=AUTH,
        token_secret="t" * 32,
        link_secret="test-link-secret",
        pii_master_key="m" * 32,
    )
    app = create_app(settings)
    resources = FakeResources()
    app.state.resources = resources
    replies: list = []

    async def handle_replies(channel, messages, resources, settings):
        replies.append((channel, messages))
        return sum(m.text.strip().upper() == "STOP" for m in messages)

    monkeypatch.setattr("api.routes.webhooks.handle_replies", handle_replies)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
    return client, resources, replies


def meta_signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={mac}"}


async def test_metas_verification_handshake(api):
    http, _, _ = api
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    answer = await http.get("/v1/webhooks/whatsapp", params=good)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    assert answer.headers["content-type"].startswith("text/plain")
    for wrong in ({"hub.verify_token": "nope"}, {"hub.mode": "unsubscribe"}):
        assert (
            await http.get("/v1/webhooks/whatsapp", params={**good, **wrong})
        ).status_code == 403


async def test_metas_statuses_become_receipts_and_an_unknown_reference_is_acknowledged(api):
    http, resources, _ = api
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ref = encode_ref(MID, "user-1", "cart_rescue")
    body = whatsapp_webhook(
        statuses=[
            whatsapp_status(WAMID, "sent", at, PHONE, ref, category="marketing"),
            whatsapp_status(WAMID, "failed", at, PHONE, ref, error=(131026, "undeliverable")),
            whatsapp_status("wamid.other", "delivered", at, PHONE, "someone-elses-ref"),
        ]
    )
    answer = await http.post("/v1/webhooks/whatsapp", content=body, headers=meta_signed(body))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["receipts"], answer.json()["unmatched"]) == (2, 1)
    [(topic, records)] = resources.events.published
    assert topic == "receipts"
    receipts = [Receipt.model_validate_json(value) for _, value in records]
    assert {key for key, _ in records} == {b"user-1"}
    assert [(r.status, r.detail, r.pricing_category) for r in receipts] == [
        ("accepted", None, "marketing"),
        ("failed", "131026", None),
    ]
    assert {(r.message_id, r.channel, r.provider_message_id, r.at) for r in receipts} == {
        (MID, "whatsapp", WAMID, at)
    }
    # A re-delivery names the same receipts.
    again = await http.post("/v1/webhooks/whatsapp", content=body, headers=meta_signed(body))
    assert again.json()["receipt_ids"] == answer.json()["receipt_ids"]


async def test_a_whatsapp_webhook_without_a_genuine_signature_is_refused(api):
    http, resources, replies = api
    body = whatsapp_webhook(
        messages=[whatsapp_text_message(PHONE, "STOP", "wamid.1", datetime.now(UTC))]
    )
    for headers in (
        {"Content-Type": "application/json"},
        meta_signed(body, "not-the-secret"),
        meta_signed(body + b" "),
    ):
        answer = await http.post("/v1/webhooks/whatsapp", content=body, headers=headers)
        assert answer.status_code == 401, headers
    assert resources.events.published == [] and replies == []
    answer = await http.post("/v1/webhooks/whatsapp", content=body, headers=meta_signed(body))
    assert answer.json()["opted_out"] == 1
    [(channel, [message])] = replies
    assert (channel, message.phone, message.text) == ("whatsapp", PHONE, "STOP")


async def test_a_signed_body_that_is_not_metas_shape_is_a_422_naming_the_field(api):
    http, _, _ = api
    body = b'{"object": "whatsapp_business_account", "entry": [{"id": "1"}]}'
    answer = await http.post("/v1/webhooks/whatsapp", content=body, headers=meta_signed(body))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "entry.0.changes"]


def twilio_signed(url: str, form: dict[str, str], token: str = AUTH) -> dict[str, Any]:
    signature = RequestValidator(token).compute_signature(url, form)
    return {
        "data": form,
        "headers": {"X-Twilio-Signature": signature},
    }


async def test_twilio_status_callbacks_and_incoming_sms_with_twilios_signature(api):
    http, resources, replies = api
    ref = encode_ref(MID, "user-1", "high_intent")
    url = f"{PUBLIC}/v1/webhooks/twilio?ref={ref}"
    form = {
        "MessageSid": "SM" + "b" * 32,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": SID,
        "From": SENDER,
        "To": PHONE,
    }
    forged = await http.post(url, **twilio_signed(url, form, "wrong-token"))
    assert forged.status_code == 401
    answer = await http.post(url, **twilio_signed(url, form))
    assert answer.status_code == 200, answer.text
    [(_, [(key, value)])] = resources.events.published
    receipt = Receipt.model_validate_json(value)
    assert (key, receipt.channel, receipt.status, receipt.detail, receipt.kind) == (
        b"user-1",
        "sms",
        "failed",
        "30003",
        "high_intent",
    )
    inbound_url = f"{PUBLIC}/v1/webhooks/twilio"
    sms = {"MessageSid": "SM" + "c" * 32, "From": PHONE, "Body": "hello", "SmsStatus": "received"}
    answer = await http.post(inbound_url, **twilio_signed(inbound_url, sms))
    assert answer.status_code == 200 and "<Response>" in answer.text
    [(channel, [message])] = replies
    assert (channel, message.phone, message.text) == ("sms", PHONE, "hello")
    # The signature covers the URL: the same form at another URL is refused.
    moved = await http.post(url, **twilio_signed(inbound_url, sms))
    assert moved.status_code == 401


async def test_a_broker_that_is_down_is_a_503_with_retry_after(api, monkeypatch):
    from api.producer import BrokerUnavailable

    http, resources, _ = api

    async def down(topic, records):
        raise BrokerUnavailable("down", 3)

    monkeypatch.setattr(resources.events, "publish", down)
    ref = encode_ref(MID, "user-1", "cart_rescue")
    body = whatsapp_webhook(
        statuses=[whatsapp_status(WAMID, "read", datetime.now(UTC), PHONE, ref)]
    )
    answer = await http.post("/v1/webhooks/whatsapp", content=body, headers=meta_signed(body))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "3"


async def test_a_user_key_too_long_for_the_reference_is_refused_unsent():
    provider = Provider(META_OK)
    message = outgoing()
    long = Outgoing(MID, "cart_rescue", "u" * 400, PHONE, message.rendered)
    assert await whatsapp(provider.transport).send(long) == SendResult(error="reference_too_long")
    assert await twilio(provider.transport).send(long) == SendResult(error="reference_too_long")
    assert provider.requests == []


async def test_the_sim_takes_a_plain_text_message_only_inside_the_window():
    sim = Sim(sim_read_rate=0.0)
    text = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": PHONE.lstrip("+"),
        "type": "text",
        "text": {"body": "See https://shop.example/x"},
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=sim.transport, base_url="http://sim") as http:
        url = f"/v21.0/{PHONE_ID}/messages"
        refused = await http.post(url, json=text, headers=headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, 131047)
        await http.post("/v1/whatsapp/inbound", json={"from": PHONE, "text": "hi"})
        taken = await http.post(url, json=text, headers=headers)
        assert taken.json()["messages"][0]["id"].startswith("wamid.")


async def test_an_sms_has_no_read_receipt_but_its_link_is_tapped():
    sim = Sim(sim_read_rate=1.0, sim_click_rate=1.0)
    await sim.twilio().send(outgoing())
    await sim.settle(lambda: len(sim.received) == 3)
    [listed] = (await sim.listing())["messages"]
    assert listed["webhooks"] == ["sent:200", "delivered:200", "clicked:302"]
    [tap] = [r for r in sim.received if r.method == "GET"]
    assert str(tap.url) == "https://shop.example/cart?m=1"  # the first URL of the SMS


async def test_each_provider_request_is_timed_by_channel_and_outcome():
    def timed(outcome: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "intentflow_provider_request_seconds_count",
                {"channel": "whatsapp", "outcome": outcome},
            )
            or 0.0
        )

    before = {outcome: timed(outcome) for outcome in ("5xx", "ConnectError", "2xx")}
    provider = Provider(
        httpx.Response(503, text="Service Unavailable"), httpx.ConnectError("refused"), META_OK
    )
    await whatsapp(provider.transport).send(outgoing())
    assert {outcome: timed(outcome) - before[outcome] for outcome in before} == {
        "5xx": 1,
        "ConnectError": 1,
        "2xx": 1,
    }
