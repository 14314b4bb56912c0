"""The operator console at ``/console/``: server-rendered pages over the API's own
queries and route functions, signed in with an admin or read key (api/console/session.py).
"""

from fastapi import APIRouter, Request, status
from fastapi.responses import RedirectResponse, Response

from api.console import operate, overview, segments, shoppers, signin
from api.console.render import page
from api.console.session import PATH, SignInRequired, current_session
from api.routing import GuardedRoute

NO_SUCH_PAGE = "There is no such page in the console."

router = APIRouter(prefix=PATH, include_in_schema=False, route_class=GuardedRoute)
for part in (signin.router, overview.router, shoppers.router, operate.router, segments.router):
    router.include_router(part)


@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/", status.HTTP_307_TEMPORARY_REDIRECT)


@router.api_route("/{rest:path}", methods=["GET", "POST"])
async def not_found(request: Request) -> Response:
    """Any other console address: a page saying so (the API's 404 is JSON)."""
    try:  # the navigation, for someone signed in
        session = current_session(request, request.app.state.settings)
    except SignInRequired:
        session = None
    return page(request, "error.html", session, status.HTTP_404_NOT_FOUND, message=NO_SUCH_PAGE)
