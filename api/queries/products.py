"""The product catalog in the warehouse: upserts from storefronts and the newest entry by id.

The table and its newest-wins reading are ``schemas.catalog`` (shared with the
dispatcher's lookup); ids are bound parameters, never SQL text.
"""

from clickhouse_connect.driver.client import Client

from schemas.catalog import (
    LATEST_PRODUCTS_SQL,
    PRODUCT_COLUMNS,
    PRODUCTS_TABLE,
    Product,
    product_from_row,
    product_row,
)
from schemas.time import as_utc, epoch_ms


def upsert_products(client: Client, products: list[Product], updated_at_ms: int) -> None:
    """One insert of every product, stamped with the API's receive time (``source='api'``)."""
    rows = [list(product_row(p, updated_at_ms, "api")) for p in products]
    client.insert(PRODUCTS_TABLE, rows, column_names=list(PRODUCT_COLUMNS))


def latest_products(client: Client, product_ids: list[str]) -> dict[str, tuple[Product, int]]:
    """product id → (its newest entry, that entry's update time in epoch ms)."""
    if not product_ids:
        return {}
    rows = client.query(LATEST_PRODUCTS_SQL, parameters={"ids": sorted(set(product_ids))})
    return {row[0]: (product_from_row(row), epoch_ms(as_utc(row[7]))) for row in rows.result_rows}
