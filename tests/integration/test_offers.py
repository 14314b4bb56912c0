"""``GET /v1/offers/{message_id}``: the offer a sent nudge made, for store backends only."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sink.rows import NUDGES, nudge_row
from schemas.keys import hash_api_key
from schemas.messages import CartItem, Nudge
from tests.collector_server import READ_KEY, SERVER_KEY, WRITE_KEY, collector_settings, running_api

ADMIN_KEY = "ak_offers-test-admin"
RESCUE, OLD, HELD_BACK = "1" * 32, "2" * 32, "3" * 32
NOW = datetime.now(UTC).replace(microsecond=0)


CART = (
    CartItem(product_id="cam-001", quantity=1, price=899.0),
    CartItem(product_id="wat-001", quantity=2, price=329.0),
)


def rescue(
    nudge_id: str, decided_at: datetime, user: str = "offer-shopper", items=CART, **extra
) -> Nudge:
    """A cart-rescue decision as the engine makes it (emitted unless ``status`` says not)."""
    return Nudge(
        nudge_id=nudge_id,
        kind="cart_rescue",
        user_key=user,
        user_id=user,
        status=extra.pop("status", "emit"),
        reason=extra.pop("reason", None),
        triggered_at=decided_at,
        decided_at=decided_at,
        cart_id=f"cart-{user}",
        items=items,
        discount_percent=10,
        channels=("whatsapp",),
        score=0.8,
        rules_version="r1",
        trigger_event_id=f"e-{nudge_id}",
    )


@pytest.fixture(scope="module")
def api(broker: str, warehouse: str, clickhouse: Client) -> Iterator[str]:
    nudges = [
        rescue(RESCUE, NOW - timedelta(hours=1)),
        rescue(OLD, NOW - timedelta(days=8)),  # past the 7-day attribution window
        rescue(HELD_BACK, NOW, status="suppressed", reason="holdout"),
    ]
    rows = [nudge_row(n, "live") for n in nudges]
    clickhouse.insert(
        NUDGES.name, list(zip(*rows, strict=True)), NUDGES.columns, column_oriented=True
    )
    settings = collector_settings(
        broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
    )
    with running_api(settings) as url:
        yield url


def get(api: str, message_id: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{api}/v1/offers/{message_id}", headers=headers, timeout=10)


def test_a_sent_rescue_offers_its_cart_and_discount(api: str):
    response = get(api, RESCUE, SERVER_KEY)
    assert response.status_code == 200, response.text
    offer = response.json()
    decided = NOW - timedelta(hours=1)
    assert offer == {
        "message_id": RESCUE,
        "kind": "cart_rescue",
        "user_key": "offer-shopper",
        "user_id": "offer-shopper",
        "product_id": None,
        "items": [
            {"product_id": "cam-001", "quantity": 1, "price": 899.0},
            {"product_id": "wat-001", "quantity": 2, "price": 329.0},
        ],
        "discount_percent": 10.0,
        "decided_at": decided.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "expires_at": (decided + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "expired": False,
    }
    assert get(api, RESCUE, ADMIN_KEY).status_code == 200


def test_an_offer_expires_with_the_attribution_window(api: str):
    offer = get(api, OLD, SERVER_KEY).json()
    assert offer["expired"] is True


@pytest.mark.parametrize("message_id", ["f" * 32, HELD_BACK])
def test_an_unknown_or_never_sent_message_is_404(api: str, message_id: str):
    response = get(api, message_id, SERVER_KEY)
    assert response.status_code == 404
    assert response.json()["detail"] == "no sent message has this id"


@pytest.mark.parametrize("key", [None, WRITE_KEY, READ_KEY, "sk_not-a-key"])
def test_only_server_and_admin_keys_read_offers(api: str, key: str | None):
    # A page's write key is public: the shopper's cart is not for it (401, as every
    # wrong-scope key in this API: api/auth.py).
    response = get(api, RESCUE, key)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
