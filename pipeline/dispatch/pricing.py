"""What a message costs, from the rules' rate card (``dispatch.rate_card``). Pure.

Neither provider answers a send with its price (Twilio fills ``price`` later, Meta's
webhooks give only the pricing category), so the dispatcher records the rate card's
price with each send: a WhatsApp template by its category, a free-form WhatsApp
message inside the 24-hour service window at the service rate, an SMS per segment
(GSM-7: 160 characters alone, 153 per part; otherwise UCS-2: 70 and 67).
"""

import math

from pipeline.domain.rules import RateCard

# The GSM 03.38 basic character set, and the extension table (two units each).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """How many billed parts an SMS body is sent as."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, part = 160, 153
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)  # UTF-16 code units
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def price(prices: dict[str, float], calling_code: str | None) -> float:
    if calling_code is None:
        return prices["default"]
    return prices.get(calling_code, prices["default"])


def whatsapp_cost(card: RateCard, category: str | None, calling_code: str | None) -> float:
    """``category``: the template's (MARKETING, UTILITY), or None for a free-form message."""
    if category is None:
        return price(card.whatsapp_service, calling_code)
    prices = card.whatsapp_utility if category == "UTILITY" else card.whatsapp_marketing
    return price(prices, calling_code)


def sms_cost(card: RateCard, text: str, calling_code: str | None) -> float:
    return round(price(card.sms, calling_code) * sms_segments(text), 6)
