"""The tracked-link token: round trip, and any change to it (or another secret) is refused."""

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.links import (
    CHANNELS,
    KINDS,
    Link,
    LinkError,
    landing_url,
    link_token,
    open_link_token,
)

SECRET = "unit-test-link-secret"
ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60).filter(
    lambda s: len(s.encode()) <= 255
)
user_keys = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=300)
hex_ids = st.from_regex(r"\A[0-9a-f]{32}\Z")
paths = st.from_regex(r"\A/[A-Za-z0-9_\-/]{0,40}(\?[a-z]{1,8}=[A-Za-z0-9]{1,20})?\Z").filter(
    lambda p: not p.startswith("//")
)
absolute = st.from_regex(r"\Ahttps?://[a-z]{1,12}\.example/[a-z0-9\-]{0,30}\Z")
links = st.builds(
    Link,
    message_id=hex_ids | ids,
    kind=st.sampled_from(KINDS),
    channel=st.sampled_from(CHANNELS),
    user_key=user_keys,
    landing=paths | absolute,
)


def make(link: Link, secret: str = SECRET) -> str:
    return link_token(
        secret,
        message_id=link.message_id,
        kind=link.kind,
        channel=link.channel,
        user_key=link.user_key,
        landing=link.landing,
    )


@settings(max_examples=300)
@given(link=links)
def test_a_token_opens_to_the_link_it_was_made_of(link):
    token = make(link)
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    assert open_link_token(SECRET, token) == link


@settings(max_examples=300)
@given(link=links, position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(link, position, bit):
    raw = bytearray(base64.urlsafe_b64decode(make(link) + "=="))
    raw[position % len(raw)] ^= 1 << bit
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(LinkError):
        open_link_token(SECRET, tampered)


@given(link=links, cut=st.integers(1, 40))
def test_a_truncated_or_extended_token_is_refused(link, cut):
    token = make(link)
    with pytest.raises(LinkError):
        open_link_token(SECRET, token[: max(0, len(token) - cut)])
    with pytest.raises(LinkError):
        open_link_token(SECRET, token + "A" * cut)


@given(link=links)
def test_another_secret_does_not_open_it(link):
    with pytest.raises(LinkError):
        open_link_token(SECRET + "x", make(link))


@given(garbage=st.text(max_size=300))
def test_garbage_is_refused_never_raised_otherwise(garbage):
    with pytest.raises(LinkError):
        open_link_token(SECRET, garbage)


def test_a_nudge_link_is_short_and_holds_no_phone():
    link = Link("0" * 32, "cart_rescue", "sms", "user-1234", "/product/cam-001")
    token = make(link)
    assert len(token) <= 96  # 87: a tracked SMS link stays near 120 characters
    assert "+1" not in base64.urlsafe_b64decode(token + "==").decode("latin-1")


@pytest.mark.parametrize(
    "landing", ["//evil.example/x", "javascript:alert(1)", "ftp://x.example/", "", "/a\nb"]
)
def test_a_landing_elsewhere_than_a_path_or_a_web_page_is_refused(landing):
    with pytest.raises(ValueError):
        make(Link("m", "campaign", "sms", "u", landing))


def test_the_landing_url_is_tagged_with_the_message():
    link = Link("m1", "high_intent", "whatsapp", "u", "/product/cam-001?utm_source=x&a=1")
    assert landing_url("https://shop.example/demo/", link) == (
        "https://shop.example/demo/product/cam-001?a=1&utm_source=intentflow"
        "&utm_medium=whatsapp&utm_campaign=high_intent&utm_message_id=m1"
    )
    away = Link("m1", "campaign", "sms", "u", "https://other.example/p/1")
    assert landing_url("https://shop.example", away).startswith("https://other.example/p/1?utm_")
