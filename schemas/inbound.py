"""What the providers post to our webhooks, in their own shapes, read into our terms. Pure.

- Meta's WhatsApp Cloud API posts JSON ``{"object": "whatsapp_business_account",
  "entry": [{"id", "changes": [{"field": "messages", "value": {...}}]}]}``; a
  ``value`` may carry several ``statuses`` (of messages we sent: ``id`` = wamid,
  ``status`` sent/delivered/read/failed, ``timestamp`` in epoch seconds,
  ``biz_opaque_callback_data``, ``pricing``, ``errors``) and several ``messages``
  (a shopper writing to us: ``from`` digits without ``+``, ``id``, ``timestamp``,
  ``type``, ``text.body``).
- Twilio posts forms: a status callback (``MessageSid``, ``MessageStatus``,
  ``ErrorCode``) to the message's ``StatusCallback`` URL, and an incoming message
  (``MessageSid``, ``From``, ``Body``, ``SmsStatus=received``) to the number's
  messaging webhook.

The provider simulator builds the same shapes with the builders below, so both
sides are held to one reading of the providers' documentation.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import pii

# Opt-out keywords (case-insensitive, the whole reply; spaces and punctuation ignored),
# as carriers and Twilio's Advanced Opt-Out recognise them.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"})
FORM = "application/x-www-form-urlencoded"

# Meta's statuses as our receipt statuses; others (deleted, warning, played) are ignored.
WHATSAPP_STATUSES = {
    "sent": "accepted",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}
# Twilio's MessageStatus values of an outbound message as our receipt statuses.
TWILIO_STATUSES = {
    "accepted": "accepted",
    "scheduled": "accepted",
    "queued": "accepted",
    "sending": "accepted",
    "sent": "accepted",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
TWILIO_INBOUND_STATUSES = frozenset({"received", "receiving"})


class BadWebhook(ValueError):
    """A webhook body that is not the provider's shape: which field, and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True, slots=True)
class InboundMessage:
    provider_event_id: str
    phone: str  # E.164
    text: str  # "" for a message without text (an image, a reaction, ...)
    at: datetime


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """A status of a message we sent, as the provider reported it."""

    provider_message_id: str
    status: str  # our ReceiptStatus: accepted, delivered, read or failed
    at: datetime
    ref: str | None  # the opaque reference we sent (schemas/provider_refs.py)
    error_code: str | None = None
    pricing_category: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    statuses: list[ProviderStatus]
    messages: list[InboundMessage]
    ignored: int = 0  # statuses and changes of kinds we do not act on


def stop_keyword(text: str) -> str | None:
    """The opt-out keyword a reply is (``STOP``, ``OPTOUT`` for "opt out", …), else None."""
    word = re.sub(r"[^A-Z]", "", text.upper())
    return word if word in STOP_WORDS else None


def e164(value: str) -> str | None:
    """A provider's sender as E.164: Meta's ``15550101234``, Twilio's ``whatsapp:+1…``."""
    number = value.strip().removeprefix("whatsapp:").replace(" ", "")
    if not number.startswith("+"):
        number = "+" + number
    return number if pii.is_e164(number) else None


# --- Meta: the webhook's shape --------------------------------------------------------

EpochSeconds = Annotated[str, Field(pattern=r"^[0-9]{1,12}$")]
Id = Annotated[str, Field(min_length=1, max_length=256)]


class _Meta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetaError(_Meta):
    # Meta's codes are small; bounded so that no giant number reaches str() (4,300 digits).
    code: Annotated[int, Field(ge=0, lt=10**9)]
    title: Annotated[str, Field(max_length=1024)] | None = None
    message: Annotated[str, Field(max_length=1024)] | None = None


class MetaPricing(_Meta):
    billable: bool | None = None
    pricing_model: Annotated[str, Field(max_length=64)] | None = None
    category: Annotated[str, Field(max_length=64)] | None = None


class MetaStatus(_Meta):
    id: Id
    status: Annotated[str, Field(max_length=32)]
    timestamp: EpochSeconds
    recipient_id: Annotated[str, Field(max_length=64)] | None = None
    biz_opaque_callback_data: Annotated[str, Field(max_length=512)] | None = None
    pricing: MetaPricing | None = None
    conversation: dict[str, Any] | None = None
    errors: Annotated[list[MetaError], Field(max_length=16)] = []


class MetaText(_Meta):
    body: Annotated[str, Field(max_length=4096)]


class MetaButton(_Meta):
    text: Annotated[str, Field(max_length=4096)] = ""


class MetaMessage(_Meta):
    from_: Annotated[str, Field(alias="from", min_length=1, max_length=32)]
    id: Id
    timestamp: EpochSeconds
    type: Annotated[str, Field(max_length=32)]
    text: MetaText | None = None
    button: MetaButton | None = None


class MetaValue(_Meta):
    messaging_product: Literal["whatsapp"]
    metadata: dict[str, Any] | None = None
    statuses: Annotated[list[MetaStatus], Field(max_length=1000)] = []
    messages: Annotated[list[MetaMessage], Field(max_length=1000)] = []


class MetaChange(_Meta):
    field: Annotated[str, Field(max_length=64)]
    value: dict[str, Any]


class MetaEntry(_Meta):
    id: Id
    changes: Annotated[list[MetaChange], Field(max_length=100)]


class MetaWebhook(_Meta):
    object: Literal["whatsapp_business_account"]
    entry: Annotated[list[MetaEntry], Field(max_length=100)]


def _first_error(exc: ValidationError, prefix: str = "") -> BadWebhook:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in (*([prefix] if prefix else []), *error["loc"]))
    return BadWebhook(where or "body", error["msg"])


def _at(timestamp: str) -> datetime:
    return datetime.fromtimestamp(int(timestamp), UTC)


def parse_whatsapp(body: bytes) -> Notification:
    """Statuses and inbound messages of one Meta webhook; BadWebhook if not its shape."""
    try:
        webhook = MetaWebhook.model_validate_json(body)
    except ValidationError as exc:
        raise _first_error(exc) from None
    statuses: list[ProviderStatus] = []
    messages: list[InboundMessage] = []
    ignored = 0
    for e, entry in enumerate(webhook.entry):
        for c, change in enumerate(entry.changes):
            if change.field != "messages":
                ignored += 1
                continue
            try:
                value = MetaValue.model_validate(change.value)
            except ValidationError as exc:
                raise _first_error(exc, f"entry.{e}.changes.{c}.value") from None
            for status in value.statuses:
                ours = WHATSAPP_STATUSES.get(status.status)
                if ours is None:
                    ignored += 1
                    continue
                error = status.errors[0].code if status.errors else None
                statuses.append(
                    ProviderStatus(
                        provider_message_id=status.id,
                        status=ours,
                        at=_at(status.timestamp),
                        ref=status.biz_opaque_callback_data,
                        error_code=str(error) if error is not None else None,
                        pricing_category=status.pricing.category if status.pricing else None,
                    )
                )
            for message in value.messages:
                phone = e164(message.from_)
                if phone is None:
                    ignored += 1
                    continue
                text = (
                    message.text.body
                    if message.text is not None
                    else message.button.text
                    if message.button is not None
                    else ""
                )
                messages.append(InboundMessage(message.id, phone, text, _at(message.timestamp)))
    return Notification(statuses, messages, ignored)


def whatsapp_webhook(
    *,
    statuses: list[dict[str, Any]] = (),
    messages: list[dict[str, Any]] = (),
    phone_number_id: str = "100000000000001",
    display_phone_number: str = "15550000000",
    waba_id: str = "100000000000000",
) -> bytes:
    """A Meta ``messages`` webhook carrying the given statuses and messages."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }
    if messages:
        value["contacts"] = [{"profile": {"name": "Shopper"}, "wa_id": m["from"]} for m in messages]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "changes": [{"field": "messages", "value": value}]}],
        }
    )


def whatsapp_text_message(phone: str, text: str, message_id: str, at: datetime) -> dict[str, Any]:
    """One inbound text message, as ``value.messages[]`` holds it."""
    return {
        "from": phone.lstrip("+"),
        "id": message_id,
        "timestamp": str(int(at.timestamp())),
        "type": "text",
        "text": {"body": text},
    }


def whatsapp_status(
    wamid: str,
    status: str,
    at: datetime,
    recipient: str,
    ref: str | None,
    *,
    category: str | None = None,
    error: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """One ``value.statuses[]`` entry: pricing on sent/delivered/read, errors on failed."""
    found: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(at.timestamp())),
        "recipient_id": recipient.lstrip("+"),
    }
    if ref is not None:
        found["biz_opaque_callback_data"] = ref
    if category is not None and status != "failed":
        found["conversation"] = {"id": f"conv-{wamid[-12:]}", "origin": {"type": category}}
        found["pricing"] = {"billable": True, "pricing_model": "PMP", "category": category}
    if error is not None:
        code, title = error
        found["errors"] = [
            {"code": code, "title": title, "message": title, "error_data": {"details": title}}
        ]
    return found


# --- Twilio: forms --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwilioStatus:
    message_sid: str
    status: str  # our ReceiptStatus
    error_code: str | None


def parse_twilio(fields: dict[str, str], now: datetime) -> TwilioStatus | InboundMessage | None:
    """A status callback, an incoming message, or None for a status we do not act on
    (BadWebhook when the form is neither)."""
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    if not sid:
        raise BadWebhook("MessageSid", "missing")
    if len(sid) > 64:
        raise BadWebhook("MessageSid", "longer than 64 characters")
    status = fields.get("MessageStatus") or fields.get("SmsStatus") or ""
    if status and status not in TWILIO_INBOUND_STATUSES:
        ours = TWILIO_STATUSES.get(status)
        if ours is None:
            return None
        error = fields.get("ErrorCode") or None
        if error is not None and not re.fullmatch(r"[0-9]{1,8}", error):
            raise BadWebhook("ErrorCode", "not a Twilio error code")
        return TwilioStatus(sid, ours, error if ours == "failed" else None)
    if "Body" not in fields:
        raise BadWebhook("Body", "neither a status callback nor an incoming message")
    if "From" not in fields:
        raise BadWebhook("From", "missing")
    phone = e164(fields["From"])
    if phone is None:
        raise BadWebhook("From", "not a phone number")
    return InboundMessage(sid, phone, fields["Body"][:1600], now)


def twilio_inbound_form(
    phone: str, text: str, message_sid: str, account_sid: str, to: str
) -> dict[str, str]:
    """Twilio's incoming-message webhook fields."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "SmsSid": message_sid,
        "SmsStatus": "received",
        "Body": text,
        "To": to,
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }


def twilio_status_form(
    message_sid: str,
    status: str,
    account_sid: str,
    sender: str,
    to: str,
    error_code: str | None = None,
) -> dict[str, str]:
    """Twilio's status callback fields for one outbound message."""
    form = {
        "SmsSid": message_sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": to,
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    if error_code is not None:
        form["ErrorCode"] = error_code
    return form
