"""A stand-in for Meta's WhatsApp Cloud API and Twilio's Messages API: ``intentflow provider-sim``.

One uvicorn app that answers both providers' send endpoints as they answer, and
posts their webhooks as they post them:

- ``POST /{version}/{phone_number_id}/messages`` (Meta): bearer token and phone number
  id checked; a free-form message outside the 24-hour service window refused with
  131047; a template checked against the approved ones (the rules'
  ``dispatch.templates``: unknown name 132001, wrong body parameter count 132000);
  answered with a ``wamid``; then status webhooks to ``{webhook_url}/v1/webhooks/
  whatsapp`` (sent with pricing, delivered, read; or failed 131026), signed with
  ``X-Hub-Signature-256``.
- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (Twilio): basic auth, form
  ``To``/``From``/``Body``/``StatusCallback``; answered with an ``SM…`` sid; then
  status callbacks (sent, delivered; or undelivered 30003) to the message's own
  ``StatusCallback`` URL, signed as Twilio signs them (``X-Twilio-Signature``).

Like the real services it has no idempotency: every POST is a new message.
``transient_error_rate`` answers HTTP 429 in each provider's shape (Meta 130429,
Twilio 20429). Neither provider reports clicks: with the click rate, the simulated
shopper follows the message's link as a phone would (one GET, redirects not
followed): a template's URL button (``{webhook_url}/v1/r/{suffix}``), an interactive
message's ``cta_url``, the first URL of an SMS.

Harness endpoints (not the providers'): ``GET /v1/messages`` lists what it took (our
message id decoded from the reference, channel, masked phone, content, webhooks);
``POST /v1/{channel}/inbound`` ``{"from": "+1…", "text": "STOP"}`` plays a shopper's
message, posted to our webhook in the provider's shape (and, on WhatsApp, opening
the service window); ``POST /v1/config`` changes rates; ``GET /phone`` shows the
shoppers' phones (each message as the shopper sees it, its link to follow);
``/health``. Phones are kept and logged masked only.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import random
import re
import secrets
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

import click
import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from twilio.request_validator import RequestValidator

from pipeline.dispatch.settings import ProviderSimSettings
from pipeline.domain.rules import WhatsAppTemplate, rules_from
from pipeline.local.sim_phone import HEADERS as PHONE_HEADERS
from pipeline.local.sim_phone import STYLE as PHONE_STYLE
from pipeline.local.sim_phone import phone_page
from pipeline.local.simulate import preferred_hour, read_chance
from pipeline.worker import configure_logging
from schemas import pii
from schemas.inbound import (
    FORM,
    twilio_inbound_form,
    twilio_status_form,
    whatsapp_status,
    whatsapp_text_message,
    whatsapp_webhook,
)
from schemas.provider_refs import decode_ref

log = logging.getLogger("intentflow.provider_sim")

ChannelName = Literal["whatsapp", "sms"]
Rate = Annotated[float, Field(ge=0, le=1)]
WINDOW_S = 24 * 3600
URL_IN_TEXT = re.compile(r"https?://\S+")
DIGITS = re.compile(r"^[1-9][0-9]{6,14}$")


@dataclass(frozen=True, slots=True)
class Behaviour:
    fail_rate: float = 0.0  # a "failed" status instead of "delivered"
    silent_rate: float = 0.0  # no status at all (a delivery that never reports)
    read_rate: float = 0.8
    click_rate: float = 0.3  # of those read: the shopper follows the link
    transient_error_rate: float = 0.0  # answer 429 to the send (the client retries)
    delay_s: float = 0.5  # between each webhook
    # Campaign messages (kind "campaign") are delivered at this rate, the rest fail.
    campaign_success_rate: float = 0.9


class BehaviourUpdate(BaseModel):
    channel: ChannelName | None = None  # None: both channels
    fail_rate: Rate | None = None
    silent_rate: Rate | None = None
    read_rate: Rate | None = None
    click_rate: Rate | None = None
    transient_error_rate: Rate | None = None
    delay_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    campaign_success_rate: Rate | None = None


class InboundRequest(BaseModel):
    from_: Annotated[str, Field(alias="from", pattern=r"^\+[1-9][0-9]{6,14}$")]
    text: Annotated[str, Field(max_length=1600)]


@dataclass(slots=True)
class Accepted:
    provider_message_id: str
    channel: str
    message_id: str | None  # ours, from the reference; None when it did not decode
    user_key: str | None
    kind: str | None
    to_masked: str
    content: dict[str, Any]
    received_at: str
    link: str | None = None  # what the shopper's phone opens on a click
    status_callback: str | None = None  # Twilio's, per message
    to: str = field(default="", repr=False)  # E.164, for the webhooks; never listed
    webhooks: list[str] = field(default_factory=list)

    def listed(self) -> dict[str, Any]:
        found = asdict(self)
        found.pop("to")
        return found


class Refused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body


def meta_error(status: int, code: int, message: str, subcode: int | None = None) -> Refused:
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": secrets.token_urlsafe(12),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    error["error_data"] = {"messaging_product": "whatsapp", "details": message}
    return Refused(status, {"error": error})


def twilio_error(status: int, code: int, message: str) -> Refused:
    return Refused(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def _approved(settings: ProviderSimSettings) -> dict[str, WhatsAppTemplate]:
    """The business account's approved templates: each kind's, and its variants' own
    (approved with the kind's parameters, which a variant must keep)."""
    templates = rules_from(settings.rules).dispatch.templates
    approved = {}
    for kind in (getattr(templates, n) for n in type(templates).model_fields):
        approved[kind.name] = kind
        for variant in kind.variants:
            if variant.whatsapp_template:
                named = kind.model_copy(update={"name": variant.whatsapp_template})
                approved[variant.whatsapp_template] = named
    return approved


def _mask(phone: str) -> str:
    try:
        return pii.mask_phone(phone)
    except ValueError:
        return "invalid"


class Simulator:
    def __init__(self, settings: ProviderSimSettings) -> None:
        self.settings = settings
        base = Behaviour(
            settings.sim_fail_rate,
            settings.sim_silent_rate,
            settings.sim_read_rate,
            settings.sim_click_rate,
            settings.sim_transient_error_rate,
            settings.sim_delay_s,
            settings.sim_campaign_success_rate,
        )
        self.behaviour: dict[str, Behaviour] = {"whatsapp": base, "sms": base}
        self.templates = _approved(settings)
        self.accepted: list[Accepted] = []
        self.attempts = 0
        self.transient_errors = 0
        self.refused = 0
        # Phone (E.164) → when the shopper last wrote on WhatsApp: the service window.
        self.last_inbound: dict[str, datetime] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        # Webhooks in flight at once, as a provider's webhook workers bound them. Unbounded,
        # 10,000 queued posts made httpcore's pool (which rescans its whole queue per
        # request) the simulator's whole CPU, and webhooks fell minutes behind.
        self._posting = asyncio.Semaphore(settings.sim_webhook_concurrency)

    @property
    def webhook_base(self) -> str:
        return self.settings.webhook_url.rstrip("/")

    async def start(self) -> None:
        concurrency = self.settings.sim_webhook_concurrency
        self._http = httpx.AsyncClient(
            timeout=5.0,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def _throttled(self, channel: str) -> bool:
        self.attempts += 1
        rate = self.behaviour[channel].transient_error_rate
        if rate and random.random() < rate:
            self.transient_errors += 1
            return True
        return False

    def window_open(self, phone: str, now: datetime) -> bool:
        last = self.last_inbound.get(phone)
        return last is not None and (now - last).total_seconds() < WINDOW_S

    # --- Meta -------------------------------------------------------------------------

    def take_whatsapp(
        self, phone_number_id: str, authorization: str | None, payload: object
    ) -> Accepted:
        token = self.settings.whatsapp_access_token.get_secret_value()
        if (
            not token
            or not authorization
            or not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())
        ):
            raise meta_error(401, 190, "Invalid OAuth access token.")
        if phone_number_id != self.settings.whatsapp_phone_number_id:
            raise meta_error(
                400, 100, f"Object with ID '{phone_number_id}' does not exist", subcode=33
            )
        if self._throttled("whatsapp"):
            raise meta_error(429, 130429, "Rate limit hit")
        if not isinstance(payload, dict):
            raise meta_error(400, 100, "Invalid parameter")
        if payload.get("messaging_product") != "whatsapp":
            raise meta_error(400, 100, "messaging_product is required and must be whatsapp")
        to = payload.get("to")
        if not isinstance(to, str) or not DIGITS.match(to.lstrip("+")):
            raise meta_error(400, 100, "Invalid parameter: to")
        phone = "+" + to.lstrip("+")
        kind = payload.get("type")
        now = datetime.now(UTC)
        if kind == "template":
            content, link = self._template(payload.get("template"))
        elif kind in ("interactive", "text"):
            if not self.window_open(phone, now):
                raise meta_error(
                    400,
                    131047,
                    "Re-engagement message: more than 24 hours since the customer "
                    "last replied to this number",
                )
            if kind == "interactive":
                content, link = self._interactive(payload.get("interactive"))
            else:
                content, link = self._text(payload.get("text"))
        else:
            raise meta_error(400, 100, f"Invalid parameter: unsupported message type {kind!r}")
        ref = payload.get("biz_opaque_callback_data")
        if ref is not None and (not isinstance(ref, str) or len(ref) > 512):
            raise meta_error(400, 100, "Invalid parameter: biz_opaque_callback_data")
        wamid = "wamid." + secrets.token_urlsafe(36)
        accepted = self._accept("whatsapp", wamid, phone, ref, content, link, now)
        accepted.content["ref"] = ref
        return accepted

    def _template(self, template: object) -> tuple[dict[str, Any], str | None]:
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            raise meta_error(400, 100, "Invalid parameter: template.name")
        approved = self.templates.get(template["name"])
        language = template.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if approved is None or code != approved.language:
            raise meta_error(404, 132001, "Template name does not exist in the translation")
        parts = {c.get("type"): c for c in template.get("components") or [] if isinstance(c, dict)}
        body = parts.get("body", {}).get("parameters") or []
        texts = [p.get("text") for p in body if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) != len(body) or len(texts) != len(approved.body):
            raise meta_error(
                400, 132000, "Number of parameters does not match the expected number of params"
            )
        header = parts.get("header", {}).get("parameters") or []
        image = header[0].get("image", {}).get("link") if header else None
        if approved.header_image and not isinstance(image, str):
            raise meta_error(400, 132012, "Parameter format does not match format in the template")
        button = parts.get("button")
        suffix = None
        if approved.link_button:
            params = (button or {}).get("parameters") or []
            suffix = params[0].get("text") if params and isinstance(params[0], dict) else None
            if not isinstance(suffix, str) or (button or {}).get("sub_type") != "url":
                raise meta_error(
                    400, 132000, "Number of parameters does not match the expected number of params"
                )
        link = f"{self.webhook_base}/v1/r/{suffix}" if suffix else None
        content = {
            "template": template["name"],
            "category": approved.category.lower(),
            "language": code,
            "body_parameters": texts,
            "header_image": image,
            "button_url_suffix": suffix,
        }
        return content, link

    def _interactive(self, interactive: object) -> tuple[dict[str, Any], str]:
        if not isinstance(interactive, dict) or interactive.get("type") != "cta_url":
            raise meta_error(400, 100, "Invalid parameter: interactive.type")
        action = interactive.get("action")
        params = action.get("parameters") if isinstance(action, dict) else None
        url = params.get("url") if isinstance(params, dict) else None
        text = (interactive.get("body") or {}).get("text")
        if not isinstance(url, str) or not isinstance(text, str) or len(text) > 1024:
            raise meta_error(400, 100, "Invalid parameter: interactive.action or body")
        display = params.get("display_text")
        if not isinstance(display, str) or not 0 < len(display) <= 20:
            raise meta_error(400, 100, "Invalid parameter: display_text")
        header = interactive.get("header") or {}
        content = {
            "interactive": "cta_url",
            "body": text,
            "display_text": display,
            "url": url,
            "header_image": (header.get("image") or {}).get("link"),
        }
        return content, url

    def _text(self, text: object) -> tuple[dict[str, Any], str | None]:
        body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(body, str) or not 0 < len(body) <= 4096:
            raise meta_error(400, 100, "Invalid parameter: text.body")
        found = URL_IN_TEXT.search(body)
        return {"text": body}, found.group(0) if found else None

    # --- Twilio -----------------------------------------------------------------------

    def take_twilio(self, account_sid: str, auth: tuple[str, str] | None, form: dict) -> Accepted:
        token = self.settings.twilio_auth_token.get_secret_value()
        sid = self.settings.twilio_account_sid
        if (
            not token
            or auth is None
            or account_sid != sid
            or not hmac.compare_digest(auth[0].encode(), sid.encode())
            or not hmac.compare_digest(auth[1].encode(), token.encode())
        ):
            raise twilio_error(401, 20003, "Authenticate")
        if self._throttled("sms"):
            raise twilio_error(429, 20429, "Too Many Requests")
        to, body, sender = form.get("To"), form.get("Body"), form.get("From")
        if not to:
            raise twilio_error(400, 21604, "A 'To' phone number is required.")
        if not pii.is_e164(to):
            raise twilio_error(400, 21211, f"Invalid 'To' Phone Number: {_mask(to)}")
        if not sender:
            raise twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body:
            raise twilio_error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            raise twilio_error(400, 21617, "The concatenated message body exceeds 1600 characters.")
        callback = form.get("StatusCallback") or None
        ref = None
        if callback:
            query = httpx.URL(callback).params
            ref = query.get("ref")
        found = URL_IN_TEXT.search(body)
        message_sid = "SM" + uuid.uuid4().hex
        accepted = self._accept(
            "sms",
            message_sid,
            to,
            ref,
            {"text": body, "from": sender},
            found.group(0) if found else None,
            datetime.now(UTC),
        )
        accepted.status_callback = callback
        return accepted

    # --- both -------------------------------------------------------------------------

    def _accept(
        self,
        channel: str,
        provider_id: str,
        phone: str,
        ref: str | None,
        content: dict[str, Any],
        link: str | None,
        now: datetime,
    ) -> Accepted:
        ours = decode_ref(ref)
        accepted = Accepted(
            provider_message_id=provider_id,
            channel=channel,
            message_id=ours.message_id if ours else None,
            user_key=ours.user_key if ours else None,
            kind=ours.kind if ours else None,
            to_masked=_mask(phone),
            content=content,
            received_at=now.isoformat(),
            link=link,
            to=phone,
        )
        self.accepted.append(accepted)
        log.info(
            "accepted %s message %s (%s) for %s",
            channel,
            accepted.message_id,
            accepted.kind,
            accepted.to_masked,
        )
        task = asyncio.create_task(self._report(accepted, ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return accepted

    async def _report(self, message: Accepted, ref: str | None) -> None:
        behaviour = self.behaviour[message.channel]
        # Seeded by our message and channel: the same message meets the same fate.
        seed = f"{message.message_id or message.provider_message_id}:{message.channel}"
        rng = random.Random(hashlib.sha256(seed.encode()).digest())
        fate = rng.random()
        if fate < behaviour.silent_rate:
            return
        fail_rate = behaviour.fail_rate
        if message.kind == "campaign":
            fail_rate = max(fail_rate, 1 - behaviour.campaign_success_rate)
        steps = ["sent"]
        if fate < behaviour.silent_rate + fail_rate:
            steps.append("failed")
        else:
            steps.append("delivered")
            if rng.random() < self.read_rate(message, behaviour.read_rate, datetime.now(UTC)):
                steps.append("read")
                if rng.random() < behaviour.click_rate:
                    steps.append("click")
        for step in steps:
            await asyncio.sleep(behaviour.delay_s)
            if step == "click":
                await self._follow_link(message)
            elif step == "read" and message.channel == "sms":
                continue  # an SMS has no read receipt; the shopper may still tap its link
            elif message.channel == "whatsapp":
                await self._post_whatsapp_status(message, ref, step)
            else:
                await self._post_twilio_status(message, step)

    def read_rate(self, message: Accepted, base: float, now: datetime) -> float:
        """The chance the shopper reads this message now: ``base``, or, with a preferred-
        hour seed, as near ``now``'s hour is to the shopper's hidden one."""
        seed = self.settings.sim_preferred_hour_seed
        if seed is None or not message.user_key:
            return base
        return read_chance(preferred_hour(seed, message.user_key), now.astimezone(UTC).hour)

    async def _follow_link(self, message: Accepted) -> None:
        """The shopper taps the link: one GET, as a phone's browser makes it."""
        assert self._http is not None
        if not message.link:
            return
        try:
            response = await self._http.get(message.link, follow_redirects=False)
        except httpx.HTTPError as exc:
            message.webhooks.append(f"clicked:{type(exc).__name__}")
            return
        message.webhooks.append(f"clicked:{response.status_code}")

    async def _post_whatsapp_status(self, message: Accepted, ref: str | None, status: str) -> None:
        # Billed as the template's category; a free-form message in the window as service.
        category = str(message.content.get("category") or "service")
        error = (131026, "Message undeliverable") if status == "failed" else None
        body = whatsapp_webhook(
            statuses=[
                whatsapp_status(
                    message.provider_message_id,
                    status,
                    datetime.now(UTC),
                    message.to,
                    ref,
                    category=category,
                    error=error,
                )
            ],
            phone_number_id=self.settings.whatsapp_phone_number_id,
        )
        await self._post(
            message, status, f"{self.webhook_base}/v1/webhooks/whatsapp", *self._signed_json(body)
        )

    async def _post_twilio_status(self, message: Accepted, status: str) -> None:
        if not message.status_callback:
            return
        status = "undelivered" if status == "failed" else status
        form = twilio_status_form(
            message.provider_message_id,
            status,
            self.settings.twilio_account_sid,
            str(message.content.get("from", "")),
            message.to,
            "30003" if status == "undelivered" else None,
        )
        url = message.status_callback
        await self._post(message, status, url, *self._signed_form(url, form))

    def _signed_json(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        secret = self.settings.whatsapp_app_secret.get_secret_value()
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={mac}"}

    def _signed_form(self, url: str, form: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        validator = RequestValidator(self.settings.twilio_auth_token.get_secret_value())
        return urlencode(form).encode(), {
            "Content-Type": FORM,
            "X-Twilio-Signature": validator.compute_signature(url, form),
        }

    async def _post(
        self, message: Accepted, status: str, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        assert self._http is not None
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(httpx.HTTPError),
                stop=stop_after_attempt(5),
                wait=wait_exponential(multiplier=0.2, max=3),
            ):
                with attempt:
                    async with self._posting:
                        response = await self._http.post(url, content=body, headers=headers)
                    if response.status_code >= 500:
                        raise httpx.HTTPStatusError(
                            "server error", request=response.request, response=response
                        )
        except Exception as exc:
            log.warning("webhook %s for %s not delivered: %s", status, message.message_id, exc)
            return
        message.webhooks.append(f"{status}:{response.status_code}")

    async def reply(self, channel: str, phone: str, text: str) -> tuple[str, int, bytes]:
        """A shopper's message posted to our webhook: (provider id, status, answer)."""
        assert self._http is not None
        now = datetime.now(UTC)
        if channel == "whatsapp":
            event_id = "wamid." + secrets.token_urlsafe(36)
            self.last_inbound[phone] = now
            body, headers = self._signed_json(
                whatsapp_webhook(
                    messages=[whatsapp_text_message(phone, text, event_id, now)],
                    phone_number_id=self.settings.whatsapp_phone_number_id,
                )
            )
            url = f"{self.webhook_base}/v1/webhooks/whatsapp"
        else:
            event_id = "SM" + uuid.uuid4().hex
            url = f"{self.webhook_base}/v1/webhooks/twilio"
            form = twilio_inbound_form(
                phone, text, event_id, self.settings.twilio_account_sid, self.settings.twilio_from
            )
            body, headers = self._signed_form(url, form)
        async with self._posting:
            response = await self._http.post(url, content=body, headers=headers)
        return event_id, response.status_code, response.content


def _refusal(exc: Refused) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status)


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def create_sim_app(settings: ProviderSimSettings | None = None) -> FastAPI:
    settings = settings or ProviderSimSettings()
    simulator = Simulator(settings)

    async def lifespan(app: FastAPI):
        await simulator.start()
        yield
        await simulator.stop()

    app = FastAPI(title="intentflow provider simulator", lifespan=lifespan)
    app.state.simulator = simulator

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def twilio_send(account_sid: str, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        try:
            accepted = simulator.take_twilio(account_sid, _basic_auth(request), form)
        except Refused as exc:
            simulator.refused += 1
            return _refusal(exc)
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        sid = accepted.provider_message_id
        return JSONResponse(
            {
                "account_sid": account_sid,
                "api_version": "2010-04-01",
                "body": form["Body"],
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form["From"],
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "to": form["To"],
                "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            },
            status_code=201,
        )

    @app.post("/{version}/{phone_number_id}/messages")
    async def whatsapp_send(version: str, phone_number_id: str, request: Request) -> JSONResponse:
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            payload = None
        try:
            accepted = simulator.take_whatsapp(
                phone_number_id, request.headers.get("authorization"), payload
            )
        except Refused as exc:
            simulator.refused += 1
            return _refusal(exc)
        to = payload["to"].lstrip("+")
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": payload["to"], "wa_id": to}],
                "messages": [{"id": accepted.provider_message_id, "message_status": "accepted"}],
            }
        )

    @app.post("/v1/{channel}/inbound")
    async def inbound(channel: ChannelName, request: InboundRequest) -> dict[str, Any]:
        event_id, status, answer = await simulator.reply(channel, request.from_, request.text)
        try:
            parsed = orjson.loads(answer or b"null")
        except orjson.JSONDecodeError:
            parsed = answer.decode(errors="replace")
        return {"provider_event_id": event_id, "webhook_status": status, "answer": parsed}

    @app.get("/v1/messages")
    async def messages(message_id: str | None = None) -> dict[str, Any]:
        found = [
            m.listed()
            for m in simulator.accepted
            if message_id is None or m.message_id == message_id
        ]
        return {
            "messages": found,
            "attempts": simulator.attempts,
            "transient_errors": simulator.transient_errors,
            "refused": simulator.refused,
        }

    @app.post("/v1/config")
    async def configure(update: BehaviourUpdate) -> dict[str, Any]:
        changes = update.model_dump(exclude_none=True, exclude={"channel"})
        for channel in [update.channel] if update.channel else ["whatsapp", "sms"]:
            simulator.behaviour[channel] = replace(simulator.behaviour[channel], **changes)
        return {channel: asdict(b) for channel, b in simulator.behaviour.items()}

    @app.get("/phone", response_class=HTMLResponse)
    async def phone() -> HTMLResponse:
        """What the simulated shoppers' phones show (a harness page: docs in sim_phone.py)."""
        body_names = {name: t.body for name, t in simulator.templates.items()}
        return HTMLResponse(phone_page(simulator.accepted, body_names), headers=PHONE_HEADERS)

    @app.get("/phone.css")
    async def phone_css() -> Response:
        return Response(PHONE_STYLE, media_type="text/css", headers=PHONE_HEADERS)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@click.command("provider-sim")
@click.option("--host", default=None, help="Default: INTENTFLOW_SIM_HOST, else 127.0.0.1.")
@click.option("--port", type=int, default=None, help="Default: INTENTFLOW_SIM_PORT, else 8025.")
def provider_sim_command(host: str | None, port: int | None) -> None:
    """Run the WhatsApp Cloud API / Twilio simulator; webhooks go to INTENTFLOW_WEBHOOK_URL."""
    overrides = {k: v for k, v in (("sim_host", host), ("sim_port", port)) if v is not None}
    settings = ProviderSimSettings(**overrides)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_sim_app(settings),
        host=settings.sim_host,
        port=settings.sim_port,
        log_level="warning",
        access_log=False,
    )
