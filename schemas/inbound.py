"""Inbound messages (a shopper's reply) in the providers' own webhook shapes, and STOP words.

Shared by the provider simulator (which posts them) and the API's webhook (which
reads them), so both speak one format, close to the real services' so the
webhook can move to their protocols later:

- WhatsApp, as Meta's Cloud API posts a message: ``entry[].changes[].value.messages[]``
  with ``from`` (digits, no ``+``), ``id``, ``timestamp`` (epoch seconds) and
  ``text.body``;
- SMS, as Twilio posts an incoming message: form-encoded ``MessageSid``, ``From``
  (E.164; ``whatsapp:+…`` on Twilio's WhatsApp) and ``Body`` (JSON with the same
  names is read too).

Our transport signature (``schemas.signatures``) still covers the raw body. Pure.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

import orjson

from schemas import pii

# Opt-out keywords (case-insensitive, the whole reply; spaces and punctuation ignored),
# as carriers and Twilio's Advanced Opt-Out recognise them.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"})
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    provider_event_id: str
    phone: str  # E.164
    text: str
    at: datetime


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


def whatsapp_body(phone: str, text: str, message_id: str, at: datetime) -> bytes:
    """A Meta Cloud API ``messages`` webhook carrying one text message."""
    return orjson.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "intentflow-sim",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "contacts": [{"wa_id": phone.lstrip("+")}],
                                "messages": [
                                    {
                                        "from": phone.lstrip("+"),
                                        "id": message_id,
                                        "timestamp": str(int(at.timestamp())),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    )


def sms_body(phone: str, text: str, message_sid: str) -> bytes:
    """A Twilio incoming-message webhook (form-encoded)."""
    return urlencode({"MessageSid": message_sid, "From": phone, "Body": text}).encode()


def parse_inbound(
    channel: str, body: bytes, content_type: str, now: datetime
) -> list[InboundMessage] | None:
    """The messages in an inbound webhook; None when the body is not one (a status
    webhook). Messages without a usable sender or text are left out."""
    if channel == "sms":
        return _twilio(body, content_type, now)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "entry" not in data:
        return None
    found = []
    for entry in _list(data.get("entry")):
        for change in _list(_dict(entry).get("changes")):
            for message in _list(_dict(_dict(change).get("value")).get("messages")):
                message = _dict(message)
                phone = e164(str(message.get("from", "")))
                text = _dict(message.get("text")).get("body")
                if phone is None or not isinstance(text, str) or not message.get("id"):
                    continue
                try:
                    at = datetime.fromtimestamp(int(message.get("timestamp", "")), UTC)
                except (TypeError, ValueError):
                    at = now
                found.append(InboundMessage(str(message["id"]), phone, text, at))
    return found


def _twilio(body: bytes, content_type: str, now: datetime) -> list[InboundMessage] | None:
    if content_type == FORM:
        fields = {
            k: v[0]
            for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()
        }
    else:
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(fields, dict):
            return None
    if "Body" not in fields or "From" not in fields:
        return None
    phone = e164(str(fields["From"]))
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    if phone is None or not sid:
        return []
    return [InboundMessage(str(sid), phone, str(fields["Body"]), now)]


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []
