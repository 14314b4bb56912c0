"""The one way to the warehouse: a clickhouse-connect client with explicit timeouts.

clickhouse-connect waits 300 s for an answer unless told otherwise; every client
here is bounded, so a warehouse that hangs is an error the caller handles, not a
worker or a request stuck for five minutes. No server session: one client is
shared by threads, and a session would queue their queries one behind another.
Blocking calls: async code runs them in a thread (``asyncio.to_thread``).
"""

from typing import TYPE_CHECKING, Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

if TYPE_CHECKING:  # the settings name these defaults: no import cycle
    from schemas.settings import CommonSettings

CONNECT_TIMEOUT_S = 3.0
# A request (a query, an insert) of the API or a worker.
REQUEST_TIMEOUT_S = 30.0
# Long batch work (migrations, writing a replay's run) may take minutes per statement.
BATCH_TIMEOUT_S = 300.0


def warehouse_client(
    url: str,
    database: str | None,
    *,
    timeout_s: float,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> Client:
    """A client of ``database`` at ``url`` (None: the server's default database, e.g. to
    create ours). Connects now: raises when the warehouse is down."""
    named: dict[str, Any] = {"database": database} if database else {}
    return clickhouse_connect.get_client(
        dsn=url,
        connect_timeout=connect_timeout_s,
        send_receive_timeout=timeout_s,
        autogenerate_session_id=False,
        **named,
    )


def warehouse_of(settings: "CommonSettings", *, timeout_s: float | None = None) -> Client:
    """A client of the settings' warehouse; ``timeout_s`` overrides the settings' own
    per-request bound (for batch work that is known to be long)."""
    return warehouse_client(
        settings.clickhouse_url,
        settings.clickhouse_database,
        timeout_s=timeout_s or settings.warehouse_timeout_s,
        connect_timeout_s=settings.warehouse_connect_timeout_s,
    )
