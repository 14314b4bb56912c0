"""``POST /v1/tokens/redeem``: a store backend redeems a VIP discount token at checkout.

Verification (signature, key id, expiry) is ``schemas.tokens``; single use is
decided by the warehouse: the attempt whose row is the token's earliest wins
(migrations/0040_token_redemptions.sql), and so does a later attempt for the same
``order_id`` (a checkout retried after its order was lost: the same redemption).
Within one API process a lock per token serialises attempts, so the warehouse only
arbitrates between processes.
"""

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from api.auth import Caller, Scope, require
from api.deps import ClickHouseDep, SettingsDep
from api.queries.tokens import claim_redemption
from api.routing import GuardedRoute
from schemas.time import iso_z
from schemas.tokens import TokenError, token_keys, verify_token

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], route_class=GuardedRoute)

# Store backends redeem at checkout; operators may too.
RedeemCaller = Annotated[Caller, Depends(require(Scope.SERVER, Scope.ADMIN))]

_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


class RedeemRequest(BaseModel):
    token: str = Field(min_length=1, max_length=4096)
    order_id: str | None = Field(default=None, max_length=256)


class RedeemResponse(BaseModel):
    status: Literal["redeemed"] = "redeemed"
    token_id: str
    user_key: str
    discount_percent: float
    redeemed_at: str


class RefusalDetail(BaseModel):
    reason: Literal["malformed", "unknown_key", "invalid_signature", "expired", "replayed"]
    message: str


def _refuse(code: int, reason: str, message: str) -> HTTPException:
    return HTTPException(code, RefusalDetail(reason=reason, message=message).model_dump())


@router.post(
    "/redeem",
    responses={
        401: {"description": "No server or admin key."},
        409: {"model": RefusalDetail, "description": "The token was already redeemed."},
        422: {"model": RefusalDetail, "description": "Malformed, forged, tampered or expired."},
        503: {"description": "The warehouse, which records redemptions, is unavailable."},
    },
)
async def redeem_token(
    body: RedeemRequest, caller: RedeemCaller, settings: SettingsDep, clickhouse: ClickHouseDep
) -> RedeemResponse:
    try:
        claims = verify_token(
            body.token, token_keys(settings, settings.token_verify_keys), now=datetime.now(UTC)
        )
    except TokenError as exc:
        raise _refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason, exc.detail) from None
    token_id = str(claims["jti"])
    async with _locks[token_id]:
        redeemed_at = await asyncio.to_thread(
            claim_redemption, clickhouse, token_id, str(claims["sub"]), body.order_id or ""
        )
    if redeemed_at is None:
        raise _refuse(status.HTTP_409_CONFLICT, "replayed", "this token was already redeemed")
    return RedeemResponse(
        token_id=token_id,
        user_key=str(claims["sub"]),
        discount_percent=float(claims.get("discount_percent", 0)),
        redeemed_at=iso_z(redeemed_at),
    )
