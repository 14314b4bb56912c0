"""Typed dependencies every route declares: settings, clients, the caller's key scope."""

from typing import Annotated

from clickhouse_connect.driver.client import Client
from fastapi import Depends, Request

from api.resources import Resources
from api.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_resources(request: Request) -> Resources:
    return request.app.state.resources


def get_clickhouse(resources: Annotated[Resources, Depends(get_resources)]) -> Client:
    # clickhouse-connect connects when the client is built: a warehouse that is
    # down raises here, and is the caller's 503 (api/errors.py), not a 500.
    return resources.clickhouse()


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
ClickHouseDep = Annotated[Client, Depends(get_clickhouse)]
