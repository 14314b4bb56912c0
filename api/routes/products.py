"""``PUT /v1/products`` and ``GET /v1/products/{product_id}``: the catalog messages quote.

A storefront's backend upserts its products with its server key (a public write
key cannot: it ships in pages, and a product's name and picture end up in messages
to other shoppers). Every entry is checked whole: bounded texts, an ISO 4217
currency, http(s) URLs only; one bad entry refuses the batch with a 422 naming the
entry, the field and the reason, and nothing is written.

An upsert is stamped with the time the API received it; the sink also writes
entries from events that name a product, stamped with the event's time. The newest
entry wins whole (schemas/catalog.py, migrations/0170_products.sql).
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.auth import Caller, Scope, require
from api.deps import ClickHouseDep
from api.queries.products import latest_products, upsert_products
from api.routing import GuardedRoute
from schemas.catalog import (
    MAX_CATEGORY,
    MAX_NAME,
    MAX_PRICE,
    MAX_PRODUCT_ID,
    MAX_URL,
    Product,
    web_url_problem,
)
from schemas.time import now_ms

router = APIRouter(prefix="/v1/products", tags=["products"], route_class=GuardedRoute)

MAX_BATCH = 500
# Store backends keep their catalog current; operators may look at it.
CatalogWriter = Annotated[Caller, Depends(require(Scope.SERVER))]
CatalogReader = Annotated[Caller, Depends(require(Scope.SERVER, Scope.READ, Scope.ADMIN))]


def _web_url(value: str) -> str:
    problem = web_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


ProductId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PRODUCT_ID, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]*$")]
WebUrl = Annotated[str, Field(max_length=MAX_URL), AfterValidator(_web_url)]


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    product_id: ProductId
    name: Annotated[Text, Field(min_length=1, max_length=MAX_NAME)]
    price: Annotated[float, Field(ge=0, le=MAX_PRICE)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    image_url: WebUrl | None = None
    url: WebUrl | None = None
    category: Annotated[Text, Field(max_length=MAX_CATEGORY)] | None = None

    def entry(self) -> Product:
        return Product(
            product_id=self.product_id,
            name=self.name,
            price=self.price,
            currency=self.currency,
            image_url=self.image_url,
            url=self.url,
            category=self.category or None,
        )


class ProductsUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    products: Annotated[list[ProductIn], Field(min_length=1, max_length=MAX_BATCH)]


class ProductsUpserted(BaseModel):
    upserted: int
    updated_at_ms: int


class ProductOut(BaseModel):
    product_id: str
    name: str
    price: float | None
    currency: str | None
    image_url: str | None
    url: str | None
    category: str | None
    updated_at_ms: int


@router.put(
    "",
    summary="Upsert products (server key); the newest entry of a product wins",
    responses={
        401: {"description": "No server key."},
        422: {"description": "An entry is invalid: its index, field and reason."},
        503: {"description": "The warehouse is unavailable; retry."},
    },
)
async def put_products(
    body: ProductsUpsert, caller: CatalogWriter, clickhouse: ClickHouseDep
) -> ProductsUpserted:
    # The last entry of an id in one batch is the one kept (same update time: later insert).
    latest = {p.product_id: p.entry() for p in body.products}
    updated_at_ms = now_ms()
    await asyncio.to_thread(upsert_products, clickhouse, list(latest.values()), updated_at_ms)
    return ProductsUpserted(upserted=len(latest), updated_at_ms=updated_at_ms)


@router.get(
    "/{product_id}",
    summary="A product's newest catalog entry",
    responses={
        401: {"description": "No server, read or admin key."},
        404: {"description": "The catalog has no such product."},
        503: {"description": "The warehouse is unavailable; retry."},
    },
)
async def get_product(
    product_id: Annotated[str, Path(min_length=1, max_length=MAX_PRODUCT_ID)],
    caller: CatalogReader,
    clickhouse: ClickHouseDep,
) -> ProductOut:
    found = await asyncio.to_thread(latest_products, clickhouse, [product_id])
    if product_id not in found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such product")
    product, updated_at_ms = found[product_id]
    return ProductOut(
        product_id=product.product_id,
        name=product.name,
        price=product.price,
        currency=product.currency,
        image_url=product.image_url,
        url=product.url,
        category=product.category,
        updated_at_ms=updated_at_ms,
    )
