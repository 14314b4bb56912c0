"""The API application: ``uvicorn --factory api.main:create_app``.

Settings are read once here and everything below receives them through
dependencies (api/deps.py).
"""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import console, docs_pages, errors
from api.resources import Resources
from api.routes import (
    admin,
    backtests,
    campaigns,
    demo,
    demo_api,
    health,
    links,
    metrics,
    offers,
    products,
    profiles,
    referrals,
    segment,
    segments,
    summaries,
    templates,
    tokens,
    track,
    tracker,
    users,
    webhooks,
)
from api.security_headers import SecurityHeaders
from api.settings import ApiSettings
from schemas.process_metrics import serving_metrics

ROUTERS = (
    health.router,
    track.router,
    segment.router,
    tracker.router,
    demo.router,
    demo_api.router,
    backtests.router,
    webhooks.router,
    admin.router,
    users.router,
    metrics.router,
    summaries.router,
    profiles.router,
    segments.router,
    campaigns.router,
    templates.router,
    tokens.router,
    offers.router,
    referrals.router,
    products.router,
    links.router,
    console.router,
)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Resources(settings) as resources:
            app.state.resources = resources
            # Start-up objects (routes, models, schemas) never die: keeping them out of
            # the collector's way cut its CPU per event by a quarter (docs/collector.md).
            gc.freeze()
            # /metrics on its own internal port, never the public one (docs/production.md).
            with serving_metrics(settings):
                yield

    app = FastAPI(
        title="intentflow",
        version="0.1.0",
        summary="Behavioural telemetry in; funnels, intent and nudge outcomes out.",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs_pages.py, bundles included
        redoc_url=None,
    )
    app.state.settings = settings
    docs_pages.install(app)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    # nosniff on every response; a CSP and no framing for the docs pages.
    app.add_middleware(SecurityHeaders)
    # Storefront pages on other origins send events to the collector with a write key.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(settings.cors_origins),
        allow_methods=["POST"],
        # X-Retry-Count: Segment's browser client numbers its resends.
        allow_headers=["Authorization", "Content-Type", "X-Retry-Count"],
        max_age=600,
    )
    return app
