"""Erasure: every warehouse row of a user and of the anonymous ids they used, then the streams.

Tables are found by their columns (``user_key``, ``user_id``, ``anonymous_id``)
rather than listed, so a table added by a later migration is erased too. The
consent store's rows go with them, the wrapped data keys included: a sealed
phone left in any log can no longer be opened ("crypto-shredding").
"""

from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client

from schemas.dispatch_tables import PII_KEYS

ID_COLUMNS = ("user_key", "user_id", "anonymous_id")


@dataclass(slots=True)
class WarehouseErasure:
    subjects: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)


def _tables(client: Client) -> dict[str, list[str]]:
    rows = client.query(
        "SELECT c.table, groupArray(c.name) FROM system.columns AS c"
        " INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table"
        " WHERE c.database = currentDatabase() AND c.name IN {cols:Array(String)}"
        " AND t.engine LIKE '%MergeTree%' GROUP BY c.table ORDER BY c.table",
        parameters={"cols": list(ID_COLUMNS)},
    ).result_rows
    return {table: sorted(columns) for table, columns in rows}


def _condition(columns: list[str]) -> str:
    return " OR ".join(f"{quote_identifier(c)} IN {{subjects:Array(String)}}" for c in columns)


def linked_subjects(client: Client, user_id: str, tables: dict[str, list[str]]) -> list[str]:
    """The user id and every anonymous id recorded with it."""
    found = {user_id}
    for table, columns in tables.items():
        if "user_id" in columns and "anonymous_id" in columns:
            rows = client.query(
                f"SELECT DISTINCT anonymous_id FROM {quote_identifier(table)}"
                " WHERE user_id = {u:String} AND anonymous_id != ''",
                parameters={"u": user_id},
            ).result_rows
            found.update(row[0] for row in rows)
    return sorted(found)


def erase_warehouse(client: Client, user_id: str) -> WarehouseErasure:
    tables = _tables(client)
    result = WarehouseErasure(linked_subjects(client, user_id, tables))
    params: dict[str, Any] = {"subjects": result.subjects}
    # Keys last: until the rows holding ciphertexts are gone, the keys still exist.
    order = sorted(tables, key=lambda t: (t == PII_KEYS, t))
    for table in order:
        condition = _condition(tables[table])
        name = quote_identifier(table)
        try:
            count = client.query(
                f"SELECT count() FROM {name} WHERE {condition}", parameters=params
            ).result_rows[0][0]
            if count:
                client.command(
                    f"DELETE FROM {name} WHERE {condition}",
                    parameters=params,
                    settings={"mutations_sync": 2},
                )
            result.rows[table] = int(count)
            left = client.query(
                f"SELECT count() FROM {name} WHERE {condition}", parameters=params
            ).result_rows[0][0]
            if left:
                result.remaining[table] = int(left)
        except Exception as exc:
            result.errors[table] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return result
