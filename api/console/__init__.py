"""The operator console at ``/console/``: server-rendered pages over the API's own
queries and route functions, signed in with an admin or read key (api/console/session.py).
"""

from fastapi import APIRouter, status
from fastapi.responses import RedirectResponse

from api.console import operate, overview, shoppers, signin
from api.console.session import PATH
from api.routing import GuardedRoute

router = APIRouter(prefix=PATH, include_in_schema=False, route_class=GuardedRoute)
for part in (signin.router, overview.router, shoppers.router, operate.router):
    router.include_router(part)


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/", status.HTTP_307_TEMPORARY_REDIRECT)
