"""Typed dependencies every route declares: settings, clients, the caller's key scope."""

from typing import Annotated

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import Depends, HTTPException, Request, status

from api.resources import Resources
from api.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_resources(request: Request) -> Resources:
    return request.app.state.resources


def get_clickhouse(resources: Annotated[Resources, Depends(get_resources)]) -> Client:
    # clickhouse-connect connects when the client is built: a warehouse that is
    # down is the caller's 503, not a 500.
    try:
        return resources.clickhouse()
    except (ClickHouseError, OSError) as exc:
        raise warehouse_unavailable(exc) from None


def warehouse_unavailable(exc: Exception) -> HTTPException:
    """The caller's 503 for a warehouse that failed (its error's type, never its text)."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"warehouse unavailable: {type(exc).__name__}",
        headers={"Retry-After": "5"},
    )


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
ClickHouseDep = Annotated[Client, Depends(get_clickhouse)]
