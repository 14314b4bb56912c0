"""The erasure list read from the warehouse, for every reader of the raw log.

``intentflow export`` and ``intentflow replay`` refuse to run without it (an
erased user's events must not come back because the warehouse was down); the
engine loads it at start and adds each ``erase`` command it applies.
"""

import logging

import click

from schemas.erasure import LOAD_QUERY, ErasureList
from schemas.pii import MasterKey
from schemas.settings import CommonSettings
from schemas.warehouse import warehouse_of

log = logging.getLogger(__name__)


class ErasureListUnavailable(RuntimeError):
    """The erasure list could not be read: nothing may be read from the raw log."""


def load_erasures(settings: CommonSettings) -> ErasureList:
    master = MasterKey.from_secret(settings.pii_master_key.get_secret_value())
    url, database = settings.clickhouse_url, settings.clickhouse_database
    try:
        client = warehouse_of(settings)
        try:
            rows = client.query(LOAD_QUERY).result_rows
        finally:
            client.close()
    except Exception as exc:
        raise ErasureListUnavailable(
            f"the erasure list ({database} at {url}) is unreadable: "
            f"{type(exc).__name__}; erased users' events would be read"
        ) from None
    return ErasureList(master, rows)


def command_erasures(settings: CommonSettings) -> ErasureList:
    """For a command (export, replay): the list, or the command stops with the reason."""
    try:
        return load_erasures(settings)
    except ErasureListUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def engine_erasures(settings: CommonSettings) -> ErasureList:
    """The engine's list at start. Unreadable: an empty one, filled by the ``erase`` commands
    on ``control``; logged, since a new consumer group could then re-read erased events."""
    try:
        return load_erasures(settings)
    except ErasureListUnavailable as exc:
        log.warning("%s; starting with the erase commands on control only", exc)
        return ErasureList(MasterKey.from_secret(settings.pii_master_key.get_secret_value()))
