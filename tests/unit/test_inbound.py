"""Inbound replies in the providers' shapes (schemas/inbound.py): round trips and STOP words."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from schemas.inbound import (
    FORM,
    STOP_WORDS,
    e164,
    parse_inbound,
    sms_body,
    stop_keyword,
    whatsapp_body,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
phones = st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z")
texts = st.text(max_size=200)


@given(
    phone=phones,
    text=texts,
    at=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_a_whatsapp_reply_in_metas_shape_reads_back(phone: str, text: str, at: datetime):
    body = whatsapp_body(phone, text, "wamid.1", at)
    [message] = parse_inbound("whatsapp", body, "application/json", NOW)
    assert (message.provider_event_id, message.phone, message.text) == ("wamid.1", phone, text)
    assert message.at == at.replace(microsecond=0)


@given(phone=phones, text=texts)
def test_an_sms_reply_in_twilios_form_reads_back(phone: str, text: str):
    [message] = parse_inbound("sms", sms_body(phone, text, "SM1"), FORM, NOW)
    assert (message.provider_event_id, message.phone, message.text, message.at) == (
        "SM1",
        phone,
        text,
        NOW,
    )


def test_delivery_status_webhooks_are_not_inbound_messages():
    status = b'{"event_id": "e", "status": "delivered", "metadata": {}}'
    assert parse_inbound("whatsapp", status, "application/json", NOW) is None
    assert parse_inbound("sms", status, "application/json", NOW) is None


@given(
    word=st.sampled_from(sorted(STOP_WORDS)),
    case=st.sampled_from([str.lower, str.upper, str.title]),
    pad=st.sampled_from(["", " ", "  \n", "."]),
)
def test_stop_words_are_recognised_in_any_case_and_padding(word: str, case, pad: str):
    assert stop_keyword(pad + case(word) + pad) == word


def test_opt_out_spelt_apart_and_other_replies():
    assert stop_keyword("opt out") == "OPTOUT"
    assert stop_keyword("Stop all") == "STOPALL"
    for text in ("please don't stop", "YES", "", "stopp", "unsubscribe me later"):
        assert stop_keyword(text) is None


def test_provider_senders_become_e164():
    assert e164("15550101234") == "+15550101234"  # Meta: digits, no plus
    assert e164("whatsapp:+15550101234") == "+15550101234"  # Twilio's WhatsApp
    assert e164("not a phone") is None
