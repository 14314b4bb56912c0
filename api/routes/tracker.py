"""``GET /tracker.js``: the browser tracker storefronts embed (api/static/tracker.js)."""

from pathlib import Path

from fastapi import APIRouter, Response

from api.routing import GuardedRoute

router = APIRouter(tags=["tracker"], route_class=GuardedRoute)

TRACKER_JS = (Path(__file__).resolve().parent.parent / "static" / "tracker.js").read_bytes()
# Storefronts on any origin load it with a <script> tag; it runs no code of theirs.
HEADERS = {
    "Cache-Control": "public, max-age=300",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


@router.get(
    "/tracker.js",
    response_class=Response,
    responses={200: {"content": {"text/javascript": {}}, "description": "The tracker."}},
    summary="The browser tracker (see docs/collector.md)",
)
async def tracker_js() -> Response:
    return Response(TRACKER_JS, media_type="text/javascript; charset=utf-8", headers=HEADERS)
