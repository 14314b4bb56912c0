"""``POST /v1/tokens/redeem``: genuine tokens redeem once (a retry of the same order
aside); forged, tampered, expired, unknown-key and replayed ones are refused with their
reason."""

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from schemas.keys import hash_api_key
from schemas.tokens import TokenKeys, sign_token
from tests.collector_server import served_api

SERVER_KEY = "sk_tokens-test-server-key"
SECRET = "tokens-test-secret-of-at-least-32-bytes"
OLD_SECRET = "tokens-test-older-secret-of-32-bytes!"
KEYS = TokenKeys("k2", {"k2": SECRET})


def claims(token_id: str, expires_in: timedelta = timedelta(days=30)) -> dict:
    now = datetime.now(UTC)
    return {
        "jti": token_id,
        "sub": "vip-user-1",
        "iat": int(now.timestamp()),
        "exp": int((now + expires_in).timestamp()),
        "discount_percent": 15.0,
    }


api = served_api(
    server_key_hashes=frozenset({hash_api_key(SERVER_KEY)}),
    token_key_id="k2",
    token_secret=SECRET,
    token_verify_keys=f"k1:{OLD_SECRET}",
)


def redeem(api: str, token: str, key: str | None = SERVER_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{api}/v1/tokens/redeem", json={"token": token}, headers=headers, timeout=10)


def test_a_genuine_token_redeems_once_then_is_refused_as_replayed(api: str):
    token = sign_token(claims("a" * 32), KEYS)
    first = redeem(api, token)
    assert first.status_code == 200, first.text
    assert first.json()["token_id"] == "a" * 32
    assert first.json()["discount_percent"] == 15.0
    again = redeem(api, token)
    assert again.status_code == 409
    assert again.json()["detail"]["reason"] == "replayed"


def test_a_retried_checkout_redeems_its_token_again_but_another_order_cannot(api: str):
    token = sign_token(claims("e" * 32), KEYS)
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}

    def for_order(order_id: str) -> httpx.Response:
        body = {"token": token, "order_id": order_id}
        return httpx.post(f"{api}/v1/tokens/redeem", json=body, headers=headers, timeout=10)

    first = for_order("order-1")
    assert first.status_code == 200, first.text
    retry = for_order("order-1")  # the order failed to reach the store: same checkout again
    assert retry.status_code == 200, retry.text
    assert retry.json()["redeemed_at"] == first.json()["redeemed_at"]
    other = for_order("order-2")
    assert other.status_code == 409
    assert other.json()["detail"]["reason"] == "replayed"
    assert redeem(api, token).status_code == 409  # and no order id names no order


def test_tokens_signed_with_a_rotated_out_key_still_verify(api: str):
    token = sign_token(claims("b" * 32), TokenKeys("k1", {"k1": OLD_SECRET}))
    assert redeem(api, token).status_code == 200


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["discount_percent"] = 90.0
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda: sign_token(claims("c" * 32), TokenKeys("k2", {"k2": "x" * 40})),
            "invalid_signature",
        ),
        (lambda: tampered(sign_token(claims("d" * 32), KEYS)), "invalid_signature"),
        (lambda: sign_token(claims("e" * 32, timedelta(seconds=-1)), KEYS), "expired"),
        (lambda: sign_token(claims("f" * 32), TokenKeys("k7", {"k7": SECRET})), "unknown_key"),
        (lambda: "not-a-token", "malformed"),
    ],
    ids=["forged", "tampered", "expired", "unknown_key_id", "malformed"],
)
def test_bad_tokens_are_refused_with_their_reason(api: str, make, reason: str):
    response = redeem(api, make())
    assert response.status_code == 422
    assert response.json()["detail"]["reason"] == reason


def test_redeeming_needs_a_server_or_admin_key(api: str):
    token = sign_token(claims("9" * 32), KEYS)
    assert redeem(api, token, key=None).status_code == 401
    assert redeem(api, token, key="sk_wrong").status_code == 401
    assert redeem(api, token).status_code == 200


def test_concurrent_redemptions_of_one_token_succeed_exactly_once(api: str):
    token = sign_token(claims("7" * 32), KEYS)

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{api}/v1/tokens/redeem",
                        json={"token": token},
                        headers={"Authorization": f"Bearer {SERVER_KEY}"},
                    )
                    for _ in range(8)
                )
            )
        return sorted(r.status_code for r in responses)

    assert asyncio.run(race()) == [200] + [409] * 7
