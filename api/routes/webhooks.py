"""The providers' webhooks, in their own protocols.

- ``GET /v1/webhooks/whatsapp``: Meta's subscription handshake (``hub.mode=subscribe``,
  ``hub.verify_token``, answered with ``hub.challenge``).
- ``POST /v1/webhooks/whatsapp``: Meta's ``messages`` notifications, signed with
  ``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body with the app secret>``.
- ``POST /v1/webhooks/twilio``: Twilio's status callbacks (the ``StatusCallback`` of each
  message we send, ``?ref=…``) and incoming SMS, signed with ``X-Twilio-Signature`` as
  Twilio's own ``RequestValidator`` checks it, over the URL Twilio called
  (``public_api_url`` + path + query) and the form.

Refused with 401, and nothing produced, unless the signature verifies (constant-time
comparison). A status of a message we sent becomes a ``Receipt`` on ``receipts``
(keyed by user); its ``receipt_id`` hashes the provider's message id and our status,
so a re-delivered webhook collapses downstream. A status whose reference
(schemas/provider_refs.py) does not decode is acknowledged and counted as
unmatched: the provider would otherwise retry it for days. Every inbound message
opens the sender's 24-hour service window and a STOP word revokes marketing consent
(api/privacy/opt_out.py). Bad input is a 4xx naming the field; a broker or
warehouse that is down is a 503 with Retry-After, which the providers retry.
"""

import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from twilio.request_validator import RequestValidator

from api.deps import ResourcesDep, SettingsDep
from api.privacy.consent import ConsentStoreUnavailable
from api.privacy.opt_out import handle_replies
from api.producer import BrokerUnavailable
from api.routing import GuardedRoute
from schemas.inbound import (
    FORM,
    BadWebhook,
    InboundMessage,
    ProviderStatus,
    parse_twilio,
    parse_whatsapp,
)
from schemas.messages import Receipt
from schemas.provider_refs import decode_ref
from schemas.receipt_ids import receipt_id
from schemas.topics import RECEIPTS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=GuardedRoute)

META_SIGNATURE_HEADER = "X-Hub-Signature-256"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
# An empty TwiML document: Twilio sends no reply to an incoming SMS.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class WebhookAccepted(BaseModel):
    receipts: int  # statuses recorded as receipts
    receipt_ids: list[str]
    unmatched: int  # statuses whose reference is not one of ours: acknowledged, dropped
    ignored: int  # statuses and changes we do not act on
    messages: int  # inbound messages read
    opted_out: int  # users whose marketing consent a STOP reply revoked


def meta_signature(app_secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256``'s value for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _secret(value) -> str | None:
    secret = value.get_secret_value() if value is not None else None
    return secret or None


def _refused(problem: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"webhook refused: {problem}")


def _bad(exc: BadWebhook) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": ["body", exc.field], "msg": exc.reason}]
    )


def to_receipt(channel: str, found: ProviderStatus) -> Receipt | None:
    """Our receipt of one provider status; None when its reference is not ours."""
    ref = decode_ref(found.ref)
    if ref is None:
        return None
    return Receipt(
        # Per provider message and our status: a re-delivery, and Twilio's queued, sending
        # and sent (all "accepted"), collapse to one receipt.
        receipt_id=receipt_id(
            ref.message_id, channel, found.status, f"{found.provider_message_id}:{found.status}"
        ),
        message_id=ref.message_id,
        kind=ref.kind,  # type: ignore[arg-type]
        user_key=ref.user_key,
        channel=channel,  # type: ignore[arg-type]
        status=found.status,  # type: ignore[arg-type]
        at=found.at,
        provider_message_id=found.provider_message_id,
        detail=found.error_code if found.status == "failed" else None,
        pricing_category=found.pricing_category,
    )


async def _record(
    channel: str,
    receipts: list[Receipt],
    inbound: list[InboundMessage],
    resources: ResourcesDep,
    settings: SettingsDep,
) -> int:
    """Publish the receipts, then apply the inbound messages; returns users opted out."""
    # The provider retries a webhook that was not acknowledged; a repeat is harmless.
    # The event log or the consent store being down is a 503 the provider retries on.
    if receipts:
        await resources.events.publish(
            RECEIPTS.name, [(r.user_key.encode(), r.to_json()) for r in receipts]
        )
    if not inbound:
        return 0
    try:
        return await handle_replies(channel, inbound, resources, settings)
    except BrokerUnavailable:
        raise
    except Exception as exc:  # the consent store (warehouse) did not answer
        raise ConsentStoreUnavailable(type(exc).__name__) from exc


@router.get(
    "/webhooks/whatsapp",
    response_class=PlainTextResponse,
    summary="Meta's webhook verification handshake",
    responses={403: {"description": "Not a subscribe request, or the verify token differs."}},
)
async def verify_whatsapp_subscription(
    settings: SettingsDep,
    mode: Annotated[str | None, Query(alias="hub.mode", max_length=32)] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token", max_length=512)] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=256)] = None,
) -> PlainTextResponse:
    expected = _secret(settings.whatsapp_verify_token)
    if (
        mode != "subscribe"
        or expected is None
        or token is None
        or challenge is None
        or not hmac.compare_digest(token.encode(), expected.encode())
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "verification refused")
    return PlainTextResponse(challenge)


@router.post(
    "/webhooks/whatsapp",
    response_model=WebhookAccepted,
    summary="Message statuses and shoppers' messages from Meta's WhatsApp Cloud API (signed)",
    responses={401: {"description": "Missing or forged X-Hub-Signature-256."}},
)
async def receive_whatsapp(
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    signature: Annotated[str | None, Header(alias=META_SIGNATURE_HEADER)] = None,
) -> WebhookAccepted:
    secret = _secret(settings.whatsapp_app_secret)
    if secret is None:
        raise _refused("no app secret is configured for WhatsApp")
    if not signature:
        raise _refused(f"missing {META_SIGNATURE_HEADER}")
    # At most 64 KiB, enforced while it is read (api/routing.py, 413).
    body = await request.body()
    if not hmac.compare_digest(meta_signature(secret, body).encode(), signature.strip().encode()):
        raise _refused("signature does not match")
    try:
        notification = parse_whatsapp(body)
    except BadWebhook as exc:
        raise _bad(exc) from None
    receipts, unmatched = [], 0
    for found in notification.statuses:
        receipt = to_receipt("whatsapp", found)
        if receipt is None:
            unmatched += 1
            log.warning("whatsapp status %s of an unknown message: acknowledged", found.status)
        else:
            receipts.append(receipt)
    opted_out = await _record("whatsapp", receipts, notification.messages, resources, settings)
    return WebhookAccepted(
        receipts=len(receipts),
        receipt_ids=[r.receipt_id for r in receipts],
        unmatched=unmatched,
        ignored=notification.ignored,
        messages=len(notification.messages),
        opted_out=opted_out,
    )


def twilio_url(public_api_url: str, request: Request) -> str:
    """The URL Twilio called, as it signed it: our public address, the path and query."""
    query = request.url.query
    return f"{public_api_url.rstrip('/')}{request.url.path}" + (f"?{query}" if query else "")


@router.post(
    "/webhooks/twilio",
    response_model=WebhookAccepted,
    summary="Status callbacks and incoming SMS from Twilio (signed)",
    responses={
        200: {"content": {"text/xml": {}}, "description": "An incoming SMS: empty TwiML."},
        401: {"description": "Missing or forged X-Twilio-Signature."},
        415: {"description": "Not a form."},
    },
)
async def receive_twilio(
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    ref: Annotated[str | None, Query(max_length=512)] = None,
    signature: Annotated[str | None, Header(alias=TWILIO_SIGNATURE_HEADER)] = None,
) -> WebhookAccepted | Response:
    token = _secret(settings.twilio_auth_token)
    if token is None:
        raise _refused("no auth token is configured for Twilio")
    if not signature:
        raise _refused(f"missing {TWILIO_SIGNATURE_HEADER}")
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"expected {FORM}")
    body = await request.body()
    try:
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": ["body"], "msg": "not UTF-8"}]
        ) from None
    url = twilio_url(settings.public_api_url, request)
    if not RequestValidator(token).validate(url, fields, signature):
        raise _refused("signature does not match")
    try:
        found = parse_twilio(fields, datetime.now(UTC))
    except BadWebhook as exc:
        raise _bad(exc) from None
    if isinstance(found, InboundMessage):
        await _record("sms", [], [found], resources, settings)
        return Response(EMPTY_TWIML, media_type="text/xml")
    receipts, unmatched, ignored = [], 0, 0
    if found is None:
        ignored = 1
    else:
        # Twilio's callbacks carry no time: the receipt is timed at reception.
        status_ = ProviderStatus(
            found.message_sid, found.status, datetime.now(UTC), ref, found.error_code
        )
        receipt = to_receipt("sms", status_)
        if receipt is None:
            unmatched = 1
            log.warning("twilio status %s of an unknown message: acknowledged", found.status)
        else:
            receipts.append(receipt)
    await _record("sms", receipts, [], resources, settings)
    return WebhookAccepted(
        receipts=len(receipts),
        receipt_ids=[r.receipt_id for r in receipts],
        unmatched=unmatched,
        ignored=ignored,
        messages=0,
        opted_out=0,
    )
