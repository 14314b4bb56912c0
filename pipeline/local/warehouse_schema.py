"""What the local stack does to a warehouse before the API and workers use it."""

import clickhouse_connect
from clickhouse_connect.driver.binding import quote_identifier


def ensure_database(url: str, database: str) -> None:
    """Create the database every client names (clients cannot connect to a missing one).

    Tables come from the numbered migrations (schemas/migrations), applied by their own step.
    """
    client = clickhouse_connect.get_client(dsn=url, connect_timeout=3)
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    finally:
        client.close()
