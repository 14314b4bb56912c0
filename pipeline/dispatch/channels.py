"""Channel adapters: one small interface, spoken as the real providers speak it.

- ``whatsapp``: Meta's WhatsApp Business Cloud API, ``POST {api}/{version}/
  {phone_number_id}/messages`` with a bearer token. Outside the 24-hour customer
  service window only an approved template may be sent; inside it, a free-form
  interactive ``cta_url`` message.
- ``sms``: Twilio's Programmable Messaging, ``POST {api}/2010-04-01/Accounts/{sid}/
  Messages.json`` (form, basic auth), with a per-message ``StatusCallback``.

Each message carries an opaque reference (schemas/provider_refs.py) that the
status webhooks echo back: Meta's ``biz_opaque_callback_data``, the ``ref`` query
parameter of Twilio's callback URL.

Neither provider deduplicates: a resend is a second message. So a request is
retried (exponential backoff with jitter) only when it certainly did not take: the
connection was never made, the provider said "too fast" (HTTP 429, Meta's
throughput codes), or a 5xx, which both document as "not processed, retry". A
request that may have reached the provider but got no answer (a read timeout, a
dropped connection) is ``SendResult(unknown=True)``: never resent here; the
dispatcher reconciles it from status webhooks. Any other refusal is final
(``error`` = the provider's code) and the dispatcher falls back from it.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from pipeline.metrics import PROVIDER_SECONDS
from schemas.provider_refs import encode_ref
from schemas.templates import RenderedMessage, TemplateSend

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    message_id: str
    kind: str
    user_key: str
    to: str  # E.164; never logged
    rendered: RenderedMessage
    # The shopper wrote to us on this channel in the last 24 h: WhatsApp may take a
    # free-form message; otherwise only ``rendered.template``.
    window_open: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str | None = None
    # A provider error code when the provider refused the message for good.
    error: str | None = None
    # The request may have reached the provider but no answer came back (a read
    # timeout, a dropped connection): never resent, reconciled from status webhooks.
    unknown: bool = False


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing) -> SendResult: ...


# Meta's Graph error codes that mean "too many messages, try later": the request was
# refused whole, so a retry cannot duplicate it.
WHATSAPP_THROUGHPUT_CODES = frozenset({4, 80007, 130429, 131048, 131056})
# Twilio's "Too Many Requests".
TWILIO_TOO_MANY_REQUESTS = 20429
GAVE_UP = "provider_unavailable"
NO_TEMPLATE = "no_template"
REF_TOO_LONG = "reference_too_long"
# Meta's limits on an interactive message's parts.
MAX_BODY_TEXT, MAX_DISPLAY_TEXT = 1024, 20


class Retry(Exception):
    """The request certainly did not take: safe to send again."""


class Unknown(Exception):
    """The request may have taken: never send again."""


async def _post_once(
    channel: str, post: Callable[[], Awaitable[httpx.Response]], retryable
) -> httpx.Response:
    started = time.perf_counter()
    outcome = "error"
    try:
        response = await post()
        outcome = f"{response.status_code // 100}xx"
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # No connection was made (or none was free): nothing was sent.
        outcome = type(exc).__name__
        raise Retry(outcome) from exc
    except httpx.TransportError as exc:
        # Read/write timeouts, a connection dropped mid-request: it may have taken.
        outcome = type(exc).__name__
        raise Unknown(outcome) from exc
    finally:
        PROVIDER_SECONDS.labels(channel, outcome).observe(time.perf_counter() - started)
    if retryable(response):
        raise Retry(f"HTTP {response.status_code}")
    return response


async def _post_with_retries(
    channel: str,
    message_id: str,
    post: Callable[[], Awaitable[httpx.Response]],
    retryable: Callable[[httpx.Response], bool],
    attempts: int,
    wait: wait_base,
) -> httpx.Response | SendResult:
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Retry),
            stop=stop_after_attempt(attempts),
            wait=wait,
        ):
            with attempt:
                return await _post_once(channel, post, retryable)
    except RetryError as exc:
        log.warning("%s send of %s gave up: %s", channel, message_id, exc.last_attempt.exception())
        return SendResult(error=GAVE_UP)
    except Unknown as exc:
        log.warning("%s send of %s has no answer (%s): not resent", channel, message_id, exc)
        return SendResult(unknown=True)
    raise AssertionError("unreachable")  # pragma: no cover


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _default_wait() -> wait_base:
    return wait_exponential_jitter(initial=0.1, max=2.0)


# --- WhatsApp (Meta Cloud API) -------------------------------------------------------


def graph_error_code(response: httpx.Response) -> int | None:
    """The ``code`` of a Graph API error object ``{"error": {"code": …}}``, if any."""
    error = _json(response).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) else None


def _whatsapp_retryable(response: httpx.Response) -> bool:
    if response.status_code == 429 or response.status_code >= 500:
        return True
    return response.status_code >= 400 and graph_error_code(response) in WHATSAPP_THROUGHPUT_CODES


def template_object(template: TemplateSend) -> dict[str, Any]:
    """Meta's ``template`` object: name, language and the filled components."""
    components: list[dict[str, Any]] = []
    if template.header_image_url:
        components.append(
            {
                "type": "header",
                "parameters": [{"type": "image", "image": {"link": template.header_image_url}}],
            }
        )
    if template.body_parameters:
        components.append(
            {
                "type": "body",
                "parameters": [{"type": "text", "text": p} for p in template.body_parameters],
            }
        )
    if template.button_url_suffix is not None:
        components.append(
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": template.button_url_suffix}],
            }
        )
    return {
        "name": template.name,
        "language": {"code": template.language},
        "components": components,
    }


def interactive_object(rendered: RenderedMessage) -> dict[str, Any]:
    """A free-form ``cta_url`` message: image header, text, one link button."""
    card = rendered.whatsapp
    text = f"*{card.title}*\n\n{card.body}" if card.title else card.body
    return {
        "type": "cta_url",
        "header": {"type": "image", "image": {"link": card.image_url}},
        "body": {"text": text[:MAX_BODY_TEXT]},
        "action": {
            "name": "cta_url",
            "parameters": {
                "display_text": card.button_text[:MAX_DISPLAY_TEXT],
                "url": card.button_url,
            },
        },
    }


def whatsapp_payload(message: Outgoing) -> dict[str, Any] | None:
    """The Cloud API request body; None when outside the window without a template."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to.lstrip("+"),
        "biz_opaque_callback_data": encode_ref(message.message_id, message.user_key, message.kind),
    }
    if message.window_open:
        payload["type"] = "interactive"
        payload["interactive"] = interactive_object(message.rendered)
    elif message.rendered.template is not None:
        payload["type"] = "template"
        payload["template"] = template_object(message.rendered.template)
    else:
        return None
    return payload


class WhatsAppChannel:
    name = "whatsapp"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        api_version: str,
        phone_number_id: str,
        access_token: str,
        attempts: int = 4,
        wait: wait_base | None = None,
    ) -> None:
        self._client = client
        self._url = f"{api_url.rstrip('/')}/{api_version}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._attempts = attempts
        self._wait = wait or _default_wait()

    async def send(self, message: Outgoing) -> SendResult:
        try:
            payload = whatsapp_payload(message)
        except ValueError as exc:  # a user key too long for the 512-char reference
            log.warning("whatsapp: %s not sent: %s", message.message_id, exc)
            return SendResult(error=REF_TOO_LONG)
        if payload is None:
            log.info("whatsapp: no approved template for %s outside the window", message.kind)
            return SendResult(error=NO_TEMPLATE)

        async def post() -> httpx.Response:
            return await self._client.post(self._url, json=payload, headers=self._headers)

        answer = await _post_with_retries(
            self.name, message.message_id, post, _whatsapp_retryable, self._attempts, self._wait
        )
        if isinstance(answer, SendResult):
            return answer
        if answer.status_code >= 400:
            code = graph_error_code(answer)
            error = str(code) if code is not None else f"http_{answer.status_code}"
            log.info("whatsapp refused %s: %s", message.message_id, error)
            return SendResult(error=error)
        messages = _json(answer).get("messages")
        wamid = messages[0].get("id") if isinstance(messages, list) and messages else None
        if not isinstance(wamid, str) or not wamid:
            # Taken (2xx) but unreadable: treat as taken, never resend.
            log.warning("whatsapp took %s without a message id", message.message_id)
            return SendResult(unknown=True)
        return SendResult(provider_message_id=wamid)


# --- SMS (Twilio Programmable Messaging) ---------------------------------------------


def _twilio_retryable(response: httpx.Response) -> bool:
    if response.status_code == 429 or response.status_code >= 500:
        return True
    return response.status_code >= 400 and _json(response).get("code") == TWILIO_TOO_MANY_REQUESTS


def status_callback_url(public_api_url: str, ref: str) -> str:
    """Where Twilio posts the message's status changes (and what it signs)."""
    return str(httpx.URL(f"{public_api_url.rstrip('/')}/v1/webhooks/twilio", params={"ref": ref}))


def twilio_form(message: Outgoing, sender: str, public_api_url: str) -> dict[str, str]:
    ref = encode_ref(message.message_id, message.user_key, message.kind)
    return {
        "To": message.to,
        "From": sender,
        "Body": message.rendered.sms,
        "StatusCallback": status_callback_url(public_api_url, ref),
    }


class TwilioSmsChannel:
    name = "sms"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        public_api_url: str,
        attempts: int = 4,
        wait: wait_base | None = None,
    ) -> None:
        self._client = client
        self._url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._sender = sender
        self._public_api_url = public_api_url
        self._attempts = attempts
        self._wait = wait or _default_wait()

    async def send(self, message: Outgoing) -> SendResult:
        try:
            form = twilio_form(message, self._sender, self._public_api_url)
        except ValueError as exc:
            log.warning("sms: %s not sent: %s", message.message_id, exc)
            return SendResult(error=REF_TOO_LONG)

        async def post() -> httpx.Response:
            return await self._client.post(self._url, data=form, auth=self._auth)

        answer = await _post_with_retries(
            self.name, message.message_id, post, _twilio_retryable, self._attempts, self._wait
        )
        if isinstance(answer, SendResult):
            return answer
        if answer.status_code >= 400:
            code = _json(answer).get("code")
            error = str(code) if code is not None else f"http_{answer.status_code}"
            log.info("twilio refused %s: %s", message.message_id, error[:64])
            return SendResult(error=error[:64])
        sid = _json(answer).get("sid")
        if not isinstance(sid, str) or not sid:
            log.warning("twilio took %s without a sid", message.message_id)
            return SendResult(unknown=True)
        return SendResult(provider_message_id=sid)
