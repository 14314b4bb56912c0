"""The dispatcher's read side of the product catalog: what a message says about its product.

One query per batch for every product the batch's messages name (like the
directory's contacts); nothing cached between batches, so a storefront's
correction counts from the next batch on. The newest entry wins
(schemas/catalog.py); a product the catalog does not know is simply absent, and
the composer says something generic instead (schemas/templates.py).
"""

from collections.abc import Iterable

from clickhouse_connect.driver.client import Client

from schemas.catalog import LATEST_PRODUCTS_SQL, Product, product_from_row


class Catalog:
    def __init__(self, client: Client) -> None:
        self._client = client

    def products(self, product_ids: Iterable[str | None]) -> dict[str, Product]:
        """product id → its newest catalog entry, for the ids the catalog knows."""
        ids = sorted({p for p in product_ids if p})
        if not ids:
            return {}
        rows = self._client.query(LATEST_PRODUCTS_SQL, parameters={"ids": ids}).result_rows
        return {row[0]: product_from_row(row) for row in rows}


class NoCatalog:
    """No warehouse to read (unit tests of the dispatcher): every product is unknown."""

    def products(self, product_ids: Iterable[str | None]) -> dict[str, Product]:
        return {}
