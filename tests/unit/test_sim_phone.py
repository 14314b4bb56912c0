"""The provider simulator's /phone page: the message as the shopper reads it, escaped,
with the link the provider was given."""

from pipeline.local.provider_sim import Accepted
from pipeline.local.sim_phone import phone_page

BODY_NAMES = {"intentflow_cart_rescue": ("name", "product", "discount")}


def accepted(channel: str, content: dict, link: str | None) -> Accepted:
    return Accepted(
        provider_message_id="wamid.x",
        channel=channel,
        message_id="m1",
        user_key="u1",
        kind="cart_rescue",
        to_masked="+44 ••••••0123",
        content=content,
        received_at="2026-12-05T10:00:00+00:00",
        link=link,
        to="+447700900123",
    )


def test_a_template_reads_as_its_approved_body_with_the_parameters_escaped() -> None:
    template = {
        "template": "intentflow_cart_rescue",
        "body_parameters": ["Ana", "<script>x</script> Camera", "10"],
        "header_image": "https://shop.example/cam.png",
    }
    page = phone_page([accepted("whatsapp", template, "https://api.example/v1/r/tok")], BODY_NAMES)
    assert "Hi Ana, you left &lt;script&gt;x&lt;/script&gt; Camera in your cart." in page
    assert "save 10%" in page
    assert "<script>" not in page
    assert 'href="https://api.example/v1/r/tok">Complete my order</a>' in page
    assert '<img src="https://shop.example/cam.png"' in page
    assert "+447700900123" not in page and "+44 ••••••0123" in page


def test_an_sms_shows_its_text_and_a_link_to_follow_newest_first() -> None:
    older = accepted(
        "sms", {"text": "Hi Ana, 10% off. https://a.example/v1/r/1"}, "https://a.example/v1/r/1"
    )
    newer = accepted("sms", {"text": "second"}, None)
    newer.received_at = "2026-12-05T11:00:00+00:00"
    page = phone_page([older, newer], BODY_NAMES)
    assert page.index("second") < page.index("Hi Ana, 10% off.")
    assert 'class="open" href="https://a.example/v1/r/1"' in page


def test_no_message_yet() -> None:
    assert "No message yet." in phone_page([], BODY_NAMES)
