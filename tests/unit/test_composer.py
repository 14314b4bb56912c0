"""The composer: product names, prices and images from the catalog, generic wording when the
product is unknown, tracked links per channel and the approved WhatsApp template's parameters."""

import re
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.rules import Templates, WhatsAppTemplate
from schemas.catalog import Product
from schemas.links import open_link_token
from schemas.templates import (
    MAX_NAME,
    MAX_PRODUCT,
    SMS_MAX_CHARS,
    TEMPLATES,
    Tracking,
    logo_url,
    render,
)

SHOP = "https://shop.example/demo"
API = "https://api.example"
SECRET = "composer-link-secret"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SPECS = Templates()

texts = st.text(max_size=400)
urls = st.from_regex(r"\Ahttps://img\.example/[a-z0-9]{1,20}\.png\Z")
products = st.builds(
    Product,
    product_id=st.text(min_size=1, max_size=40),
    name=texts,
    price=st.none() | st.floats(min_value=0, max_value=1e12),
    currency=st.none() | st.sampled_from(["EUR", "USD", "GBP"]),
    image_url=st.none() | urls,
    url=st.none() | st.sampled_from([f"{SHOP}/product/x-1", "https://other.example/p?id=1"]),
    category=st.none() | texts,
)
placeholders = st.lists(
    st.sampled_from(["name", "product", "image", "price", "discount", "cta"]), max_size=6
).map(tuple)
specs = st.builds(
    WhatsAppTemplate,
    name=st.just("t_1"),
    header_image=st.booleans(),
    body=placeholders,
    link_button=st.booleans(),
)


def shown_texts(rendered) -> list[str]:
    card = rendered.whatsapp
    return [card.title, card.body, card.button_text, rendered.sms]


@settings(max_examples=300)
@given(
    kind=st.sampled_from(sorted(TEMPLATES)),
    product=st.none() | products,
    name=st.none() | texts,
    discount=st.floats(min_value=0.5, max_value=100),
    spec=specs,
    user_key=st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ).filter(lambda s: len(s.encode()) <= 255),
)
def test_any_product_renders_bounded_clean_text_and_the_template_spec(
    kind, product, name, discount, spec, user_key
):
    rendered = render(
        kind=kind,
        message_id="f" * 32,
        storefront_url=SHOP,
        discount_percent=discount,
        product=product,
        name=name,
        tracking=Tracking(SECRET, API, user_key),
        template_spec=spec,
    )
    for text in shown_texts(rendered):
        assert not CONTROL.search(text)
    # The template's own text has no braces, so any left would be an unresolved placeholder.
    shown_name = (product.name if product else "") + (name or "")
    if "{" not in shown_name and "}" not in shown_name:
        assert all("{" not in t for t in shown_texts(rendered))
    assert len(rendered.sms) <= SMS_MAX_CHARS
    send = rendered.template
    assert send is not None
    assert len(send.body_parameters) == len(spec.body)
    for value in send.body_parameters:
        assert value and not CONTROL.search(value) and "  " not in value
        assert len(value) <= max(MAX_PRODUCT, MAX_NAME, 2100)
    if "name" in spec.body:
        assert len(send.body_parameters[spec.body.index("name")]) <= MAX_NAME
    if "product" in spec.body:
        assert len(send.body_parameters[spec.body.index("product")]) <= MAX_PRODUCT
    assert (send.header_image_url is not None) == spec.header_image
    assert (send.button_url_suffix is not None) == spec.link_button
    # Every link goes through the redirect, with a token naming this message and channel.
    for url, channel in ((rendered.cta, "whatsapp"), (rendered.sms.rsplit(" ", 1)[-1], "sms")):
        assert url.startswith(f"{API}/v1/r/")
        link = open_link_token(SECRET, url.rsplit("/", 1)[-1])
        assert (link.message_id, link.kind, link.channel) == ("f" * 32, kind, channel)
        assert link.user_key == user_key
    if spec.link_button:
        assert rendered.cta == f"{API}/v1/r/{send.button_url_suffix}"


@given(product_id=st.text(min_size=3, max_size=30).filter(lambda s: s.strip() == s))
def test_an_unknown_product_gets_generic_wording_and_the_logo_never_its_id(product_id):
    for kind in ("cart_rescue", "high_intent", "campaign"):
        rendered = render(
            kind=kind,
            message_id="m",
            storefront_url=SHOP,
            discount_percent=10,
            product=None,
            tracking=Tracking(SECRET, API, "u-1"),
            template_spec=getattr(SPECS, kind),
        )
        assert rendered.whatsapp.image_url == logo_url(SHOP) == f"{SHOP}/images/logo.png"
        assert rendered.template is not None
        assert rendered.template.header_image_url == logo_url(SHOP)
        assert TEMPLATES[kind].generic_product in rendered.whatsapp.body
        landing = open_link_token(SECRET, rendered.cta.rsplit("/", 1)[-1]).landing
        assert landing == ("/cart" if kind == "cart_rescue" else "/")


def test_a_known_product_is_named_priced_pictured_and_linked_to_its_page_or_the_cart():
    camera = Product(
        "cam-001",
        "Aperture X100 Camera",
        899.0,
        "EUR",
        f"{SHOP}/images/cam-001.png",
        f"{SHOP}/product/cam-001",
        "cameras",
    )
    rendered = render(
        kind="cart_rescue",
        message_id="a" * 32,
        storefront_url=SHOP,
        discount_percent=10,
        product=camera,
        name="  Ada\tLovelace ",
        tracking=Tracking(SECRET, API, "user-7"),
        template_spec=SPECS.cart_rescue,
    )
    assert rendered.whatsapp.body == (
        "Hi Ada, you left Aperture X100 Camera in your cart. Order today and save 10%."
    )
    assert "cam-001" not in rendered.whatsapp.body and "cam-001" not in rendered.sms.split(" h")[0]
    assert rendered.whatsapp.image_url == camera.image_url
    send = rendered.template
    assert send is not None
    assert send.name == "intentflow_cart_rescue" and send.language == "en_US"
    assert send.body_parameters == ("Ada", "Aperture X100 Camera", "10")
    assert send.header_image_url == camera.image_url
    link = open_link_token(SECRET, send.button_url_suffix or "")
    assert link.landing == "/cart"  # a rescue lands on the cart it restores
    assert urlsplit(rendered.cta).path == f"/v1/r/{send.button_url_suffix}"
    nudged = render(
        kind="high_intent",
        message_id="b" * 32,
        storefront_url=SHOP,
        discount_percent=10,
        product=camera,
        tracking=Tracking(SECRET, API, "user-7"),
        template_spec=SPECS.high_intent,
    )
    assert nudged.template is not None
    assert open_link_token(SECRET, nudged.template.button_url_suffix or "").landing == (
        "/product/cam-001"
    )
    priced = render(
        kind="campaign",
        message_id="m",
        storefront_url=SHOP,
        discount_percent=5,
        product=camera,
        template_spec=WhatsAppTemplate(name="t", body=("price", "product")),
    )
    assert priced.template is not None
    assert priced.template.body_parameters == ("899.00 EUR", "Aperture X100 Camera")


def test_a_vip_link_lands_with_its_discount_token():
    rendered = render(
        kind="vip_upgrade",
        message_id="b" * 32,
        storefront_url=SHOP,
        discount_percent=15,
        token="header.payload.sig",
        tracking=Tracking(SECRET, API, "vip-1"),
        template_spec=SPECS.vip_upgrade,
    )
    link = open_link_token(SECRET, rendered.cta.rsplit("/", 1)[-1])
    assert link.landing == "/?vip_token=header.payload.sig"
    assert rendered.template is not None and rendered.template.header_image_url is None


def test_untracked_links_still_go_to_the_storefront_with_the_message_id():
    rendered = render(kind="high_intent", message_id="m9", storefront_url=SHOP, discount_percent=5)
    assert rendered.cta.startswith(f"{SHOP}/?") and "utm_message_id=m9" in rendered.cta
    assert rendered.template is None


def test_the_rules_file_documents_the_default_templates():
    from pipeline.domain.rules import default_rules

    assert default_rules().dispatch.templates == Templates()
