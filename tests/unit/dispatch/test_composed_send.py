"""The dispatcher's hook into the composer: a batch's products are read in one catalog
lookup, and the message that goes out names the product, carries its picture, fills the
rules' WhatsApp template and links through the signed redirect."""

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from pipeline.dispatch.channels import Outgoing, SendResult
from pipeline.dispatch.directory import Contact, SealedPhone
from pipeline.dispatch.dispatcher import Dispatcher
from schemas.catalog import Product
from schemas.links import open_link_token
from schemas.messages import Nudge
from tests.unit.dispatch.test_fallback_grace import MemoryStore, settings

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NOON_MS = int(NOON.timestamp() * 1000)
CAMERA = Product(
    "cam-001",
    "Aperture X100 Camera",
    899.0,
    "EUR",
    "https://api.example/demo/images/cam-001.png",
    "https://api.example/demo/product/cam-001",
    "cameras",
)


class Reachable:
    """Everyone consented to WhatsApp offers, with a phone."""

    def contacts(self, subjects: dict[str, list[str]]) -> dict[str, Contact]:
        phone = SealedPhone("s", "whatsapp", b"sealed", b"wrapped")
        return {user: Contact({"whatsapp"}, set(), {"whatsapp": phone}) for user in subjects}

    def phone(self, sealed: SealedPhone) -> str:
        return "+15550100000"


class OneCatalog:
    def __init__(self) -> None:
        self.lookups: list[list[str | None]] = []

    def products(self, product_ids: Iterable[str | None]) -> dict[str, Product]:
        ids = list(product_ids)
        self.lookups.append(ids)
        return {CAMERA.product_id: CAMERA} if CAMERA.product_id in ids else {}


class Capture:
    name = "whatsapp"

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send(self, message: Outgoing) -> SendResult:
        self.sent.append(message)
        return SendResult(provider_message_id=f"wa-{len(self.sent)}")


def nudge(nudge_id: str, product_id: str) -> bytes:
    return Nudge(
        nudge_id=nudge_id,
        kind="high_intent",
        user_key=f"user-{nudge_id[:4]}",
        status="emit",
        triggered_at=NOON,
        decided_at=NOON,
        product_id=product_id,
        discount_percent=10,
        channels=("whatsapp",),
        score=80.0,
        rules_version="test",
        trigger_event_id="e-1",
    ).to_json()


def test_a_batch_reads_its_products_once_and_each_message_names_its_own():
    catalog, channel = OneCatalog(), Capture()
    dispatcher = Dispatcher(
        MemoryStore(),
        Reachable(),  # type: ignore[arg-type]
        {"whatsapp": channel},  # type: ignore[dict-item]
        settings(public_api_url="https://api.example", storefront_url="https://api.example/demo"),
        "receipts",
        catalog=catalog,  # type: ignore[arg-type]
    )
    decisions = [(0, nudge("a" * 32, "cam-001")), (1, nudge("b" * 32, "unknown-9"))]
    asyncio.run(dispatcher.on_decisions(decisions, NOON_MS))
    assert catalog.lookups == [["cam-001", "unknown-9"]]  # one lookup for the batch
    by_id = {m.message_id: m.rendered for m in channel.sent}
    known, unknown = by_id["a" * 32], by_id["b" * 32]
    assert "Aperture X100 Camera" in known.whatsapp.body
    assert known.whatsapp.image_url == CAMERA.image_url
    assert "unknown-9" not in unknown.whatsapp.body + unknown.sms
    assert unknown.whatsapp.image_url == "https://api.example/demo/images/logo.png"
    template = known.template
    assert template is not None and template.name == "intentflow_high_intent"
    assert template.body_parameters == ("there", "Aperture X100 Camera", "10")
    assert template.header_image_url == CAMERA.image_url
    link = open_link_token("test-link-secret", template.button_url_suffix or "")
    assert (link.message_id, link.channel, link.user_key) == ("a" * 32, "whatsapp", "user-aaaa")
    assert link.landing == "/product/cam-001"
    assert known.cta == f"https://api.example/v1/r/{template.button_url_suffix}"
