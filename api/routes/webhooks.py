"""``POST /v1/webhooks/{provider}``: a provider's delivery status becomes a ``Receipt``;
an inbound message (a shopper's reply, in the provider's own shape: schemas/inbound.py)
that is a STOP word revokes marketing consent on that channel (api/privacy/opt_out.py).

Refused with 401, and nothing produced, unless the HMAC signature over the
timestamp and body verifies with that provider's secret (constant-time) and the
timestamp is fresh (``schemas.signatures``). ``receipt_id`` hashes the
provider's event id, so a re-delivered webhook collapses downstream.
"""

import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from api.deps import ResourcesDep, SettingsDep
from api.privacy.opt_out import handle_replies
from api.producer import BrokerUnavailable
from api.routing import GuardedRoute
from schemas.inbound import parse_inbound
from schemas.messages import Receipt
from schemas.receipt_ids import receipt_id
from schemas.signatures import stale, verify
from schemas.topics import RECEIPTS

router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=GuardedRoute)

Provider = Literal["whatsapp", "sms"]


class WebhookMetadata(BaseModel):
    message_id: Annotated[str, Field(min_length=1, max_length=128)]
    user_key: Annotated[str, Field(min_length=1, max_length=256)]
    kind: Literal["cart_rescue", "high_intent", "vip_upgrade", "campaign"]


class WebhookEvent(BaseModel):
    event_id: Annotated[str, Field(min_length=1, max_length=256)]
    provider_message_id: Annotated[str, Field(min_length=1, max_length=256)]
    status: Literal["delivered", "read", "clicked", "failed"]
    at: AwareDatetime
    error_code: Annotated[str, Field(max_length=64)] | None = None
    metadata: WebhookMetadata


class WebhookAccepted(BaseModel):
    receipt_id: str


class InboundAccepted(BaseModel):
    messages: int  # inbound messages read
    opted_out: int  # users whose marketing consent a STOP reply revoked


def _secret(settings: SettingsDep, provider: str) -> str | None:
    value = getattr(settings, f"{provider}_webhook_secret")
    return value.get_secret_value() if value is not None else None


def to_receipt(provider: str, event: WebhookEvent) -> Receipt:
    meta = event.metadata
    return Receipt(
        receipt_id=receipt_id(meta.message_id, provider, event.status, event.event_id),
        message_id=meta.message_id,
        kind=meta.kind,
        user_key=meta.user_key,
        channel=provider,  # type: ignore[arg-type]
        status=event.status,
        at=event.at,
        provider_message_id=event.provider_message_id,
        detail=event.error_code,
    )


@router.post(
    "/webhooks/{provider}",
    response_model=WebhookAccepted | InboundAccepted,
    summary="Delivery status, or a shopper's reply, from a message provider (signed)",
    responses={401: {"description": "Missing, forged or stale signature."}},
)
async def receive_webhook(
    provider: Provider,
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
    signature: Annotated[str | None, Header(alias="X-Intentflow-Signature")] = None,
    timestamp: Annotated[str | None, Header(alias="X-Intentflow-Timestamp")] = None,
) -> WebhookAccepted | InboundAccepted:
    secret = _secret(settings, provider)
    now_s, tolerance_s = time.time(), settings.webhook_tolerance_s
    # The headers first: a request without a fresh signed timestamp is refused unread.
    problem = (
        "no secret is configured for this provider"
        if secret is None
        else stale(signature, timestamp, now_s, tolerance_s)
    )
    if secret is not None and problem is None:
        # At most 64 KiB, enforced while it is read (api/routing.py, 413).
        body = await request.body()
        problem = verify(secret, signature, timestamp, body, now_s, tolerance_s)
    if problem is not None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"webhook refused: {problem}")
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    inbound = parse_inbound(provider, body, content_type, datetime.now(UTC))
    if inbound is not None:
        # The provider retries a webhook that was not acknowledged; a repeat is harmless.
        try:
            opted_out = await handle_replies(provider, inbound, resources, settings)
        except BrokerUnavailable as exc:
            raise _retry_later("reply not fully recorded", exc.retry_after_s) from None
        except Exception as exc:  # the consent store (warehouse) did not answer
            raise _retry_later(f"consent store unavailable: {type(exc).__name__}", 2) from None
        return InboundAccepted(messages=len(inbound), opted_out=opted_out)
    try:
        event = WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, errors) from None
    receipt = to_receipt(provider, event)
    try:
        await resources.events.publish(
            RECEIPTS.name, [(receipt.user_key.encode(), receipt.to_json())]
        )
    except BrokerUnavailable as exc:
        # The provider retries a webhook that was not acknowledged.
        raise _retry_later("receipt not recorded", exc.retry_after_s) from None
    return WebhookAccepted(receipt_id=receipt.receipt_id)


def _retry_later(what: str, retry_after_s: float) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{what}; retry",
        headers={"Retry-After": str(retry_after_s)},
    )
