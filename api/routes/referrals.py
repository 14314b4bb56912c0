"""Referral links: ``POST /v1/referrals`` gives a shopper their link for bringing a new
customer; ``GET /v1/ref/{code}`` is that link, landing the visitor on the storefront.

Who may ask: an operator (admin key), or the storefront's backend for a signed-in
shopper's "invite a friend" page (server key). Never a page's public write key: it
would let anyone mint links in another shopper's name. The code is the referrer's
own (schemas/referrals.py): asking again gives the same link. The funnel of visits,
sign-ups and orders through each link is ``GET /v1/metrics/referrals``.
"""

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from api.auth import Caller, Scope, require
from api.deps import ClickHouseDep, SettingsDep
from api.privacy.audit import actor_of
from api.queries.referrals import save_referral
from api.routing import GuardedRoute
from schemas.referrals import CODE_PATTERN, referral_code, referral_landing

router = APIRouter(prefix="/v1", tags=["referrals"], route_class=GuardedRoute)

ReferralMaker = Annotated[Caller, Depends(require(Scope.SERVER, Scope.ADMIN))]


class ReferralRequest(BaseModel):
    # The referrer: an existing shopper's user id, as the storefront identifies them.
    user_id: Annotated[str, Field(min_length=1, max_length=256)]


class ReferralLink(BaseModel):
    code: str
    url: str


@router.post(
    "/referrals",
    response_model=ReferralLink,
    status_code=status.HTTP_201_CREATED,
    summary="A shopper's referral link (the same one each time they ask)",
    responses={
        401: {"description": "No server or admin key."},
        503: {"description": "The warehouse is unavailable; retry."},
    },
)
async def create_referral(
    request: ReferralRequest,
    caller: ReferralMaker,
    settings: SettingsDep,
    clickhouse: ClickHouseDep,
) -> ReferralLink:
    code = referral_code(settings.link_secret.get_secret_value(), request.user_id)
    at = datetime.now(UTC)
    await asyncio.to_thread(save_referral, clickhouse, code, request.user_id, at, actor_of(caller))
    return ReferralLink(code=code, url=f"{settings.public_api_url.rstrip('/')}/v1/ref/{code}")


@router.get(
    "/ref/{code}",
    response_class=RedirectResponse,
    status_code=status.HTTP_302_FOUND,
    summary="Follow a referral link: to the storefront, tagged with the code",
    responses={422: {"description": "Not a referral code."}},
)
async def follow_referral(
    code: Annotated[str, Path(pattern=CODE_PATTERN.pattern)], settings: SettingsDep
) -> RedirectResponse:
    # No lookup: the landing is always the storefront, and a code nobody was given
    # attributes nothing (api/queries/referrals.py), so an outage never strands a visitor.
    return RedirectResponse(
        referral_landing(settings.storefront_url, code),
        status.HTTP_302_FOUND,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
