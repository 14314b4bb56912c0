"""The API application: ``uvicorn --factory api.main:create_app``.

Settings are read once here and everything below receives them through
dependencies (api/deps.py).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.resources import Resources
from api.routes import health
from api.settings import ApiSettings

ROUTERS = (health.router,)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Resources(settings) as resources:
            app.state.resources = resources
            yield

    app = FastAPI(
        title="intentflow",
        version="0.1.0",
        summary="Behavioural telemetry in; funnels, intent and nudge outcomes out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    for router in ROUTERS:
        app.include_router(router)
    return app
