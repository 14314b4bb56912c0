"""Message templates: one logical message rendered as a WhatsApp rich card, an approved
WhatsApp template send and an SMS text.

Shared by the dispatcher (sends) and the admin preview (shows, sends nothing).
Templates may use only the placeholders {name}, {product}, {price}, {discount},
{cta} and {image}; values are inserted once (never re-parsed), stripped of control
characters, whitespace runs folded and bounded, so a shopper-supplied name or a
storefront's product name cannot break a message.

``{product}`` is the catalog's name of the product (``schemas.catalog.Product``);
unknown, the template's generic wording fills it and ``{image}`` is the storefront's
logo: no text ever shows a raw product id. ``{cta}`` is the tracked link
(``schemas.links``: ``{public_api_url}/v1/r/{token}``, one token per channel) when a
``Tracking`` is given, else the storefront's landing URL itself with the UTM tags
(``utm_message_id``, see ``schemas.messages.Receipt``). Pure.
"""

import re
import string
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from schemas.catalog import Product
from schemas.links import link_token, tracked_url

PLACEHOLDERS = frozenset({"name", "product", "price", "discount", "cta", "image"})
MAX_NAME, MAX_PRODUCT, MAX_PRICE_TEXT = 40, 60, 32
SMS_MAX_CHARS = 480  # three concatenated segments
LOGO_PATH = "/images/logo.png"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Template:
    title: str
    body: str
    button: str
    sms: str
    # What {product} says when the product is not in the catalog.
    generic_product: str = "our selection"

    def __post_init__(self) -> None:
        for text in (self.title, self.body, self.button, self.sms):
            placeholders_of(text)


def placeholders_of(text: str) -> set[str]:
    """The placeholders a template text uses; ValueError naming any not allowed."""
    names = {field for _, field, _, _ in string.Formatter().parse(text) if field}
    unknown = names - PLACEHOLDERS
    if unknown:
        raise ValueError(f"unknown placeholders {sorted(unknown)}; allowed {PLACEHOLDERS}")
    return names


TEMPLATES: dict[str, Template] = {
    "cart_rescue": Template(
        title="Your cart misses you",
        body="Hi {name}, you left {product} in your cart. Order today and save {discount}%.",
        button="Complete my order",
        sms="Hi {name}, you left {product} in your cart: {discount}% off today. {cta}",
        generic_product="a few things",
    ),
    "high_intent": Template(
        title="Still thinking about it?",
        body="Hi {name}, still thinking about {product}? Here is {discount}% off, just for you.",
        button="See the offer",
        sms="Hi {name}, {discount}% off {product} for you today. {cta}",
        generic_product="what caught your eye",
    ),
    "vip_upgrade": Template(
        title="Welcome to VIP",
        body="Hi {name}, thank you for your orders: {discount}% off your next one.",
        button="Use my VIP discount",
        sms="Hi {name}, you are VIP now: {discount}% off your next order. {cta}",
    ),
    "campaign": Template(
        title="Something for you",
        body="Hi {name}, {discount}% off {product}, just for you.",
        button="Shop now",
        sms="Hi {name}, {discount}% off {product}. {cta}",
    ),
}


class TemplateSpec(Protocol):
    """An approved WhatsApp template, as the rules declare it
    (``pipeline.domain.rules.WhatsAppTemplate`` has these attributes)."""

    @property
    def name(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def header_image(self) -> bool: ...
    @property
    def body(self) -> tuple[str, ...]: ...
    @property
    def link_button(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Tracking:
    """What a tracked link needs: the signing secret, our public URL and whose message it is."""

    secret: str
    public_api_url: str
    user_key: str


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
    text = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def cta_url(
    storefront_url: str, kind: str, message_id: str, channel: str, token: str | None = None
) -> str:
    """The storefront landing a message's link leads to; it traces back to ``message_id``."""
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


def landing(storefront_url: str, kind: str, product: Product | None, vip_token: str | None) -> str:
    """Where a message's link lands: a cart rescue's on the cart (which the storefront
    restores from the message, with its discount); another's on the product's page if
    known (a path when it is under the storefront, keeping tokens short), else home."""
    base = storefront_url.rstrip("/")
    if kind != "cart_rescue" and product is not None and product.url:
        page = product.url
        if page.startswith(base + "/"):
            page = page[len(base) :]
    else:
        page = "/cart" if kind == "cart_rescue" else "/"
    if vip_token:
        page += ("&" if "?" in page else "?") + urlencode({"vip_token": vip_token})
    return page


def logo_url(storefront_url: str) -> str:
    """The storefront's logo (the demo shop serves it): the image of a message whose
    product is unknown or has no image."""
    return f"{storefront_url.rstrip('/')}{LOGO_PATH}"


def price_text(product: Product | None) -> str:
    if product is None or product.price is None:
        return "a special price"
    amount = f"{product.price:,.2f}"
    return clean(f"{amount} {product.currency}" if product.currency else amount, MAX_PRICE_TEXT)


def first_name(name: str | None) -> str:
    words = clean(name or "", MAX_NAME).split(" ")
    return words[0] if words[0] else "there"


def _discount(percent: float) -> str:
    return f"{percent:g}"


def _link(
    tracking: Tracking | None,
    storefront_url: str,
    kind: str,
    message_id: str,
    channel: str,
    page: str,
    vip_token: str | None,
) -> tuple[str, str | None]:
    """(the link a channel's message carries, its token when tracked)."""
    untracked = cta_url(storefront_url, kind, message_id, channel, vip_token), None
    if tracking is None:
        return untracked
    try:
        token = link_token(
            tracking.secret,
            message_id=message_id,
            kind=kind,
            channel=channel,
            user_key=tracking.user_key,
            landing=page,
        )
    except ValueError:
        # Ids past the token's bounds (1 KiB): the shopper still gets a working link,
        # only its click goes uncounted. Our own ids never come near them.
        return untracked
    return tracked_url(tracking.public_api_url, token), token


def render(
    *,
    kind: str,
    message_id: str,
    storefront_url: str,
    discount_percent: float,
    product: Product | None = None,
    name: str | None = None,
    token: str | None = None,
    tracking: Tracking | None = None,
    template_spec: TemplateSpec | None = None,
    templates: dict[str, Template] = TEMPLATES,
) -> RenderedMessage:
    """Both channels' forms of one message; each carries a link tagged with its channel.

    ``product``: the catalog's entry, None when unknown. ``token``: a VIP upgrade's
    discount token, which the landing URL carries. ``tracking``: links go through our
    redirect (``/v1/r/{token}``), which records the click. ``template_spec``: the
    approved WhatsApp template of this kind, filled into ``RenderedMessage.template``.
    """
    template = templates[kind]
    product_name = clean(product.name, MAX_PRODUCT) if product is not None else ""
    known = product if product_name else None  # a nameless entry says nothing: generic
    image = known.image_url if known is not None and known.image_url else logo_url(storefront_url)
    values = {
        "name": first_name(name),
        "product": product_name or template.generic_product,
        "price": price_text(known),
        "discount": _discount(discount_percent),
        "image": image,
    }
    page = landing(storefront_url, kind, known, token)
    whatsapp_cta, whatsapp_token = _link(
        tracking, storefront_url, kind, message_id, "whatsapp", page, token
    )
    sms_cta, _ = _link(tracking, storefront_url, kind, message_id, "sms", page, token)
    on_whatsapp = {**values, "cta": whatsapp_cta}
    card = WhatsAppCard(
        image_url=image,
        title=template.title.format_map(on_whatsapp),
        body=template.body.format_map(on_whatsapp),
        button_text=template.button.format_map(on_whatsapp),
        button_url=whatsapp_cta,
    )
    sms = template.sms.format_map({**values, "cta": sms_cta})
    if len(sms) > SMS_MAX_CHARS:
        sms = sms[: SMS_MAX_CHARS - len(sms_cta) - 2] + "… " + sms_cta
    send = None
    if template_spec is not None:
        send = TemplateSend(
            name=template_spec.name,
            language=template_spec.language,
            category=template_spec.category,
            header_image_url=image if template_spec.header_image else None,
            body_parameters=tuple(on_whatsapp[p] for p in template_spec.body),
            button_url_suffix=whatsapp_token if template_spec.link_button else None,
        )
    return RenderedMessage(message_id, kind, card, sms, whatsapp_cta, send)
