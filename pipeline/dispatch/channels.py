"""Channel adapters: one small interface, WhatsApp and SMS over a provider's HTTP API.

``POST {provider}/v1/{channel}/messages`` with an ``Idempotency-Key`` (message id
and channel): a provider that already took that key answers with the same
message id and sends nothing, as Twilio and Meta do with client message ids.
That is what makes a resend after a crash harmless. Transient failures
(network, timeouts, 429, 5xx) are retried with exponential backoff and jitter;
any other 4xx is a hard failure the dispatcher falls back from.
"""

import logging
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

from schemas.templates import RenderedMessage

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
    duplicate: bool = False
    # The request may have reached the provider but no answer came back (a read
    # timeout, a dropped connection): never resent, reconciled from status webhooks.
    unknown: bool = False


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing) -> SendResult: ...


class TransientError(Exception):
    pass


def idempotency_key(message_id: str, channel: str) -> str:
    return f"{message_id}:{channel}"


def whatsapp_body(message: Outgoing) -> dict[str, Any]:
    card = message.rendered.whatsapp
    return {
        "type": "card",
        "card": {
            "image_url": card.image_url,
            "title": card.title,
            "body": card.body,
            "button": {"text": card.button_text, "url": card.button_url},
        },
    }


def sms_body(message: Outgoing) -> dict[str, Any]:
    return {"type": "text", "text": message.rendered.sms}


_BODIES = {"whatsapp": whatsapp_body, "sms": sms_body}


class HttpChannel:
    def __init__(
        self, name: str, base_url: str, client: httpx.AsyncClient, attempts: int = 4
    ) -> None:
        self.name = name
        self._url = f"{base_url.rstrip('/')}/v1/{name}/messages"
        self._client = client
        self._attempts = attempts

    async def _post(self, body: dict[str, Any], key: str) -> httpx.Response:
        try:
            response = await self._client.post(
                self._url, json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError as exc:
            raise TransientError(type(exc).__name__) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"HTTP {response.status_code}")
        return response

    async def send(self, message: Outgoing) -> SendResult:
        body = {
            "to": message.to,
            **_BODIES[self.name](message),
            # Echoed back in the provider's webhooks (as Meta's biz_opaque_callback_data).
            "metadata": {
                "message_id": message.message_id,
                "user_key": message.user_key,
                "kind": message.kind,
            },
        }
        key = idempotency_key(message.message_id, self.name)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential_jitter(initial=0.1, max=2.0),
            ):
                with attempt:
                    response = await self._post(body, key)
        except RetryError as exc:
            log.warning("%s send of %s gave up: %s", self.name, message.message_id, exc)
            return SendResult(error="provider_unavailable")
        if response.status_code >= 400:
            code = _error_code(response)
            log.info("%s refused %s: %s", self.name, message.message_id, code)
            return SendResult(error=code)
        answer = response.json()
        return SendResult(
            provider_message_id=str(answer["provider_message_id"]),
            duplicate=bool(answer.get("duplicate", False)),
        )


def _error_code(response: httpx.Response) -> str:
    try:
        code = response.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        code = None
    return str(code or f"http_{response.status_code}")[:64]
