"""Inbound replies in the providers' shapes (schemas/inbound.py): round trips and STOP words."""

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.inbound import (
    STOP_WORDS,
    BadWebhook,
    InboundMessage,
    TwilioStatus,
    e164,
    parse_twilio,
    parse_whatsapp,
    stop_keyword,
    twilio_inbound_form,
    twilio_status_form,
    whatsapp_status,
    whatsapp_text_message,
    whatsapp_webhook,
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
    body = whatsapp_webhook(messages=[whatsapp_text_message(phone, text, "wamid.1", at)])
    found = parse_whatsapp(body)
    assert found.statuses == []
    [message] = found.messages
    assert (message.provider_event_id, message.phone, message.text) == ("wamid.1", phone, text)
    assert message.at == at.replace(microsecond=0)


@given(phone=phones, text=texts)
def test_an_sms_reply_in_twilios_form_reads_back(phone: str, text: str):
    form = twilio_inbound_form(phone, text, "SM1", "AC1", "+15005550006")
    message = parse_twilio(form, NOW)
    assert message == InboundMessage("SM1", phone, text[:1600], NOW)


# Meta's documented status notification: one POST, several statuses, pricing on sent,
# errors on failed (developers.facebook.com .../webhooks/reference/messages/status).
META_STATUSES = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922",
                        },
                        "statuses": [
                            {
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
                                "status": "sent",
                                "timestamp": "1750263773",
                                "recipient_id": "16505551234",
                                "biz_opaque_callback_data": "ref-1",
                                "conversation": {
                                    "id": "5b2cb8d6a35a6b0f4e4d3c2b1a090817",
                                    "origin": {"type": "marketing"},
                                },
                                "pricing": {
                                    "billable": True,
                                    "pricing_model": "PMP",
                                    "category": "marketing",
                                },
                            },
                            {
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MDY0QkQ0RkE0NDFEOEI1OAA=",
                                "status": "failed",
                                "timestamp": "1750263780",
                                "recipient_id": "16505551234",
                                "biz_opaque_callback_data": "ref-2",
                                "errors": [
                                    {
                                        "code": 131026,
                                        "title": "Message undeliverable",
                                        "message": "Message undeliverable",
                                        "error_data": {"details": "Message undeliverable."},
                                        "href": "https://developers.facebook.com/docs/whatsapp/"
                                        "cloud-api/support/error-codes/",
                                    }
                                ],
                            },
                            {
                                "id": "wamid.3",
                                "status": "deleted",
                                "timestamp": "1750263790",
                                "recipient_id": "16505551234",
                            },
                        ],
                    },
                }
            ],
        }
    ],
}


def test_metas_status_notification_reads_as_one_status_each_with_pricing_and_errors():
    found = parse_whatsapp(orjson.dumps(META_STATUSES))
    assert [(s.status, s.ref, s.error_code, s.pricing_category) for s in found.statuses] == [
        ("accepted", "ref-1", None, "marketing"),
        ("failed", "ref-2", "131026", None),
    ]
    assert found.statuses[0].at == datetime.fromtimestamp(1750263773, UTC)
    assert found.ignored == 1  # "deleted" is not a delivery step
    assert found.messages == []


def test_the_simulators_status_builder_is_metas_shape():
    at = datetime.fromtimestamp(1750263773, UTC)
    built = whatsapp_status("wamid.X", "failed", at, "+16505551234", "r", error=(131026, "x"))
    [status] = parse_whatsapp(whatsapp_webhook(statuses=[built])).statuses
    assert (status.status, status.error_code, status.ref) == ("failed", "131026", "r")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"object": "page", "entry": []}, "object"),
        ({"object": "whatsapp_business_account"}, "entry"),
        (
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "1",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "statuses": [{"id": "w", "status": "read", "timestamp": "x"}],
                                },
                            }
                        ],
                    }
                ],
            },
            "entry.0.changes.0.value.statuses.0.timestamp",
        ),
    ],
)
def test_a_body_that_is_not_metas_shape_names_the_field(body, field):
    with pytest.raises(BadWebhook) as caught:
        parse_whatsapp(orjson.dumps(body))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("twilio", "ours", "error"),
    [
        ("queued", "accepted", None),
        ("sending", "accepted", None),
        ("sent", "accepted", None),
        ("delivered", "delivered", None),
        ("undelivered", "failed", "30003"),
        ("failed", "failed", "30008"),
    ],
)
def test_twilios_status_callbacks_map_to_our_statuses(twilio, ours, error):
    form = twilio_status_form("SMabc", twilio, "AC1", "+15005550006", "+14155550100", error)
    assert parse_twilio(form, NOW) == TwilioStatus("SMabc", ours, error)


def test_a_twilio_form_that_is_neither_names_the_field():
    with pytest.raises(BadWebhook) as caught:
        parse_twilio({"MessageSid": "SM1", "From": "+14155550100"}, NOW)
    assert caught.value.field == "Body"
    with pytest.raises(BadWebhook) as caught:
        parse_twilio({"Body": "hi"}, NOW)
    assert caught.value.field == "MessageSid"


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
