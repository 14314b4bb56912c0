"""What a message costs: the rate card's price by channel, category and country; SMS by
segment (GSM-7 160/153, otherwise UCS-2 70/67)."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.dispatch import pricing
from pipeline.dispatch.channels import SendResult
from pipeline.domain.rules import default_rules

from .test_channel_plan import PhoneIn, planned
from .test_send_time import DAY_ZONE, NIGHT_MS, decide, make, nudge, receipts

CARD = default_rules().dispatch.rate_card


def test_segments_at_the_boundaries() -> None:
    assert pricing.sms_segments("a" * 160) == 1
    assert pricing.sms_segments("a" * 161) == 2
    assert pricing.sms_segments("a" * 306) == 2
    assert pricing.sms_segments("a" * 307) == 3
    assert pricing.sms_segments("€" * 80) == 1  # extension characters count twice
    assert pricing.sms_segments("€" * 81) == 2
    assert pricing.sms_segments("…" * 70) == 1  # not GSM-7: UCS-2
    assert pricing.sms_segments("…" * 71) == 2
    assert pricing.sms_segments("😀" * 35) == 1  # two UTF-16 units each
    assert pricing.sms_segments("😀" * 36) == 2


@given(st.text(max_size=1000), st.text(max_size=50))
def test_a_longer_text_never_costs_fewer_segments(text: str, more: str) -> None:
    assert 1 <= pricing.sms_segments(text) <= pricing.sms_segments(text + more)


def test_the_country_and_the_category_pick_the_price() -> None:
    assert pricing.whatsapp_cost(CARD, "MARKETING", "44") == CARD.whatsapp_marketing["44"]
    assert pricing.whatsapp_cost(CARD, "UTILITY", "44") == CARD.whatsapp_utility["44"]
    assert pricing.whatsapp_cost(CARD, None, "44") == CARD.whatsapp_service["default"]
    assert pricing.whatsapp_cost(CARD, "MARKETING", "998") == CARD.whatsapp_marketing["default"]
    assert pricing.sms_cost(CARD, "a" * 200, "1") == round(2 * CARD.sms["1"], 6)


def test_the_sent_receipt_carries_the_price_in_the_cards_currency() -> None:
    d, _, _ = make(PhoneIn("+447700900123"), planned({}))
    decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    (sent,) = [r for r in receipts(d) if r.status == "sent"]
    assert (sent.channel, sent.cost, sent.currency) == ("whatsapp", 0.0529, "USD")
    d, _, _ = make(PhoneIn("+14155550142"), planned({"1": ["sms"]}))
    decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
    (sent,) = [r for r in receipts(d) if r.status == "sent"]
    assert sent.channel == "sms" and sent.cost is not None and sent.cost >= CARD.sms["1"]


class WroteToUs(PhoneIn):
    """The shopper wrote to us on WhatsApp ``ago_ms`` before the send."""

    def __init__(self, ago_ms: int) -> None:
        super().__init__("+447700900123")
        self.ago_ms = ago_ms

    def contacts(self, subjects):
        found = super().contacts(subjects)
        for contact in found.values():
            contact.last_inbound_ms["whatsapp"] = NIGHT_MS - self.ago_ms
        return found


class Recording:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message):
        self.sent.append(message)
        return SendResult(provider_message_id="wamid.1")


def test_inside_the_service_window_whatsapp_is_free_form_at_the_service_rate() -> None:
    for ago_ms, window_open, cost in [
        (3_600_000, True, CARD.whatsapp_service["default"]),
        (25 * 3_600_000, False, CARD.whatsapp_marketing["44"]),
    ]:
        d, _, channels = make(WroteToUs(ago_ms), planned({}))
        channels["whatsapp"] = d.channels["whatsapp"] = Recording()  # type: ignore[assignment]
        decide(d, nudge(1, timezone=DAY_ZONE), now_ms=NIGHT_MS)
        (outgoing,) = channels["whatsapp"].sent
        assert outgoing.window_open is window_open
        (sent,) = [r for r in receipts(d) if r.status == "sent"]
        assert sent.cost == cost
