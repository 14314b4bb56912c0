"""Message templates: one logical message rendered as a WhatsApp rich card and an SMS text.

Shared by the dispatcher (sends) and the admin preview (shows, sends nothing).
Templates may use only the placeholders {name}, {product}, {discount}, {cta}
and {image}; values are inserted once (never re-parsed), stripped of control
characters and bounded, so a shopper-supplied name cannot break a message. The
CTA link carries ``utm_message_id`` (see ``schemas.messages.Receipt``). Pure.
"""

import re
import string
from dataclasses import dataclass
from urllib.parse import urlencode

PLACEHOLDERS = frozenset({"name", "product", "discount", "cta", "image"})
MAX_NAME, MAX_PRODUCT = 40, 60
SMS_MAX_CHARS = 480  # three concatenated segments
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Template:
    title: str
    body: str
    button: str
    sms: str

    def __post_init__(self) -> None:
        for text in (self.title, self.body, self.button, self.sms):
            names = {field for _, field, _, _ in string.Formatter().parse(text) if field}
            unknown = names - PLACEHOLDERS
            if unknown:
                raise ValueError(f"unknown placeholders {sorted(unknown)}; allowed {PLACEHOLDERS}")


TEMPLATES: dict[str, Template] = {
    "cart_rescue": Template(
        title="Your cart misses you",
        body="Hi {name}, your {product} is still in your cart. Order today and save {discount}%.",
        button="Complete my order",
        sms="Hi {name}, your {product} is still in your cart: {discount}% off today. {cta}",
    ),
    "high_intent": Template(
        title="Still thinking about it?",
        body="Hi {name}, {product} caught your eye. Here is {discount}% off, just for you.",
        button="See the offer",
        sms="Hi {name}, {product} is {discount}% off for you today. {cta}",
    ),
    "vip_upgrade": Template(
        title="Welcome to VIP",
        body="Hi {name}, thank you for your orders: {discount}% off your next one.",
        button="Use my VIP discount",
        sms="Hi {name}, you are VIP now: {discount}% off your next order. {cta}",
    ),
    "campaign": Template(
        title="Something for you",
        body="Hi {name}, {product} at {discount}% off.",
        button="Shop now",
        sms="Hi {name}, {product} at {discount}% off. {cta}",
    ),
}


@dataclass(frozen=True, slots=True)
class WhatsAppCard:
    image_url: str
    title: str
    body: str
    button_text: str
    button_url: str


@dataclass(frozen=True, slots=True)
class TemplateSend:
    """A WhatsApp template message's filled parts (Meta's ``template`` object)."""

    name: str
    language: str
    category: str  # MARKETING or UTILITY
    header_image_url: str | None
    body_parameters: tuple[str, ...]  # {{1}}..{{n}} of the approved body, in order
    button_url_suffix: str | None  # the URL button's dynamic part: the tracked link's token


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    message_id: str
    kind: str
    whatsapp: WhatsAppCard  # free-form: only inside the 24-hour service window
    sms: str
    cta: str
    # The same message as an approved template: what WhatsApp takes outside the window.
    template: TemplateSend | None = None


def clean(value: str, limit: int) -> str:
    text = _CONTROL.sub(" ", value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cta_url(
    storefront_url: str, kind: str, message_id: str, channel: str, token: str | None = None
) -> str:
    """The link a message carries; the landing and any order trace back to ``message_id``."""
    params = {
        "utm_source": "intentflow",
        "utm_medium": channel,
        "utm_campaign": kind,
        "utm_message_id": message_id,
    }
    if token:
        params["vip_token"] = token
    path = "/cart" if kind == "cart_rescue" else "/"
    return f"{storefront_url.rstrip('/')}{path}?{urlencode(params)}"


def image_url(storefront_url: str, product: str | None) -> str:
    if not product:
        return f"{storefront_url.rstrip('/')}/static/logo.png"
    return f"{storefront_url.rstrip('/')}/images/{urlencode({'p': product})[2:]}.jpg"


def _discount(percent: float) -> str:
    return f"{percent:g}"


def render(
    *,
    kind: str,
    message_id: str,
    storefront_url: str,
    discount_percent: float,
    product: str | None = None,
    name: str | None = None,
    token: str | None = None,
    templates: dict[str, Template] = TEMPLATES,
) -> RenderedMessage:
    """Both channels' forms of one message; each carries a CTA tagged with its channel."""
    template = templates[kind]
    product_text = clean(product or "your favourites", MAX_PRODUCT)
    values = {
        "name": clean(name or "there", MAX_NAME) or "there",
        "product": product_text,
        "discount": _discount(discount_percent),
        "image": image_url(storefront_url, product),
    }
    whatsapp_cta = cta_url(storefront_url, kind, message_id, "whatsapp", token)
    sms_cta = cta_url(storefront_url, kind, message_id, "sms", token)
    card = WhatsAppCard(
        image_url=values["image"],
        title=template.title.format_map({**values, "cta": whatsapp_cta}),
        body=template.body.format_map({**values, "cta": whatsapp_cta}),
        button_text=template.button.format_map({**values, "cta": whatsapp_cta}),
        button_url=whatsapp_cta,
    )
    sms = template.sms.format_map({**values, "cta": sms_cta})
    if len(sms) > SMS_MAX_CHARS:
        sms = sms[: SMS_MAX_CHARS - len(sms_cta) - 2] + "… " + sms_cta
    return RenderedMessage(message_id, kind, card, sms, whatsapp_cta)
