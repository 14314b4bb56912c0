"""Property tests: phone encryption round-trips, masking hides all but the last four digits,
templates render any input into both channels with the message id in the link, Meta's
webhook signature changes with any change, and the channel policy falls back as specified."""

from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.routes.webhooks import meta_signature
from pipeline.dispatch import policy
from schemas import pii
from schemas.catalog import Product
from schemas.templates import SMS_MAX_CHARS, TEMPLATES, Template, render

phones = st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z")
users = st.text(min_size=1, max_size=40)
MASTER = pii.MasterKey.from_secret("unit-test-master")


@given(phone=phones, user=users, channel=st.sampled_from(["whatsapp", "sms"]))
def test_a_sealed_phone_opens_only_for_its_user_and_channel(phone, user, channel):
    data_key = pii.new_data_key()
    wrapped = pii.wrap_key(MASTER, user, data_key)
    sealed = pii.encrypt_phone(data_key, user, channel, phone)
    assert phone.encode() not in sealed
    opened = pii.decrypt_phone(pii.unwrap_key(MASTER, user, wrapped), user, channel, sealed)
    assert opened == phone
    assert pii.from_text(pii.to_text(sealed)) == sealed
    with pytest.raises(pii.PiiError):
        pii.decrypt_phone(data_key, user + "x", channel, sealed)
    with pytest.raises(pii.PiiError):
        pii.decrypt_phone(pii.new_data_key(), user, channel, sealed)  # shredded key


@given(phone=phones)
def test_masking_keeps_the_calling_code_and_last_digits_only(phone):
    masked = pii.mask_phone(phone)
    code = pii.calling_code(phone)
    assert masked.startswith(f"+{code} ")
    digits = [c for c in masked if c.isdigit()]
    assert len(digits) <= len(code) + 4
    assert len(masked) == len(phone) + 1  # every hidden digit has its dot


def test_masking_example():
    assert pii.mask_phone("+919876549721") == "+91 ••••••9721"


texts = st.text(max_size=300)


@settings(max_examples=200)
@given(
    kind=st.sampled_from(sorted(TEMPLATES)),
    name=st.none() | texts,
    product=st.none() | texts,
    discount=st.floats(min_value=0.5, max_value=100),
    message_id=st.from_regex(r"\A[0-9a-f]{32}\Z"),
)
def test_any_input_renders_both_channels_with_the_message_in_the_link(
    kind, name, product, discount, message_id
):
    rendered = render(
        kind=kind,
        message_id=message_id,
        storefront_url="https://shop.example",
        discount_percent=discount,
        product=None if product is None else Product("p-1", product),
        name=name,
    )
    for link, medium in ((rendered.whatsapp.button_url, "whatsapp"), (rendered.cta, "whatsapp")):
        query = parse_qs(urlparse(link).query)
        assert query["utm_message_id"] == [message_id]
        assert query["utm_medium"] == [medium]
    assert len(rendered.sms) <= SMS_MAX_CHARS
    assert f"utm_message_id={message_id}" in rendered.sms
    assert "\n" not in rendered.sms
    assert "{" not in rendered.whatsapp.title or "{" in (name or "") + (product or "")


def test_a_template_with_an_unknown_placeholder_is_refused():
    with pytest.raises(ValueError, match="unknown placeholders"):
        Template(title="{phone}", body="", button="", sms="")


@given(
    body=st.binary(max_size=200), secret=st.text(min_size=1, max_size=30), flip=st.integers(0, 199)
)
def test_metas_webhook_signature_changes_with_any_bit_of_the_body_or_secret(body, secret, flip):
    signature = meta_signature(secret, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert meta_signature(secret + "x", body) != signature
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        assert meta_signature(secret, tampered) != signature


def reach(consented=(), paused=()):
    return policy.Reach(frozenset(consented), frozenset(paused))


def test_whatsapp_first_then_sms_with_the_reason():
    assert policy.next_step(reach({"whatsapp", "sms"})) == policy.Send("whatsapp")
    assert policy.next_step(reach({"sms"})) == policy.Send("sms", "whatsapp", "no_whatsapp_consent")
    assert policy.next_step(reach({"whatsapp", "sms"}, {"whatsapp"})) == policy.Send(
        "sms", "whatsapp", "whatsapp_paused"
    )
    after_timeout = policy.next_step(reach({"whatsapp", "sms"}), ("whatsapp",), "delivery_timeout")
    assert after_timeout == policy.Send("sms", "whatsapp", "delivery_timeout")
    assert policy.next_step(reach(), ()) == policy.Stop("suppressed", "no_consent")
    assert policy.next_step(reach({"whatsapp", "sms"}, {"whatsapp", "sms"})) == policy.Hold()
    # Never a third send: both tried, nothing left.
    assert isinstance(
        policy.next_step(reach({"whatsapp", "sms"}), ("whatsapp", "sms")), policy.Stop
    )
