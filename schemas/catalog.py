"""Catalog entries: what a message says about a product (name, price, image, page).

Storefronts upsert products with their server key (``PUT /v1/products``) or send the
same fields in an event's properties, as Segment's e-commerce spec names them
(``product_id``, ``name``, ``price``, ``currency``, ``image_url``, ``url``,
``category``). Both land in the warehouse's ``products`` table
(migrations/0170_products.sql), where the newest row of a product wins whole: an
API upsert is stamped with the API's clock when it is received, an event's row with
the event's time, and whichever time is later is the product's entry (equal
times: the later insert). An event makes a catalog row only when it names the
product (``name``); a price or an id alone does not overwrite the entry.

A catalog holds no personal data: products only. Pure; no I/O.
"""

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_PRODUCT_ID = 256
MAX_NAME = 200
MAX_CATEGORY = 100
MAX_URL = 2048
MAX_PRICE = 1e12
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    price: float | None = None
    currency: str | None = None  # ISO 4217, upper case
    image_url: str | None = None  # http(s)
    url: str | None = None  # the product's page, http(s)
    category: str | None = None


def web_url_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable catalog URL (absolute http or https), or None."""
    if len(value) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        return "contains whitespace or control characters"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    return None


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub(" ", value).strip()
    return text[:limit] if text else None


def _url(value: Any) -> str | None:
    if not isinstance(value, str) or not value or web_url_problem(value) is not None:
        return None
    return value


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    price = float(value)
    return price if math.isfinite(price) and 0 <= price <= MAX_PRICE else None


def product_of(properties: dict[str, Any]) -> Product | None:
    """The catalog entry an event's properties describe, or None when they name no product.

    Lenient by design (an event is valid without these fields): a field that is not
    acceptable (a ``javascript:`` image, a negative price) is left out, not refused.
    """
    product_id = properties.get("product_id")
    if not isinstance(product_id, str) or not product_id or len(product_id) > MAX_PRODUCT_ID:
        return None
    if _CONTROL.search(product_id):
        return None
    name = _text(properties.get("name"), MAX_NAME)
    if name is None:
        return None
    currency = properties.get("currency")
    currency = currency.upper() if isinstance(currency, str) else None
    return Product(
        product_id=product_id,
        name=name,
        price=_price(properties.get("price")),
        currency=currency if currency and _CURRENCY.match(currency) else None,
        image_url=_url(properties.get("image_url")),
        url=_url(properties.get("url")),
        category=_text(properties.get("category"), MAX_CATEGORY),
    )


# The warehouse table (migrations/0170_products.sql) and its columns, in insert order.
PRODUCTS_TABLE = "products"
PRODUCT_COLUMNS = (
    "product_id",
    "name",
    "price",
    "currency",
    "image_url",
    "url",
    "category",
    "updated_at",
    "source",
)
# The newest entry of each product among {ids:Array(String)}: argMax by update time,
# then by insert time, as the ReplacingMergeTree's merges will keep it.
LATEST_PRODUCTS_SQL = f"""
SELECT product_id, latest.1, latest.2, latest.3, latest.4, latest.5, latest.6, latest.7
FROM (
    SELECT product_id,
           argMax((name, price, currency, image_url, url, category, updated_at),
                  (updated_at, inserted_at)) AS latest
    FROM {PRODUCTS_TABLE}
    WHERE product_id IN {{ids:Array(String)}}
    GROUP BY product_id
)
"""


def product_row(product: Product, updated_at_ms: int, source: str) -> tuple:
    """A ``products`` row (``PRODUCT_COLUMNS``); ``updated_at`` as epoch milliseconds."""
    return (
        product.product_id,
        product.name,
        product.price,
        product.currency or "",
        product.image_url or "",
        product.url or "",
        product.category or "",
        updated_at_ms,
        source,
    )


def product_from_row(row: tuple) -> Product:
    """A ``LATEST_PRODUCTS_SQL`` row (without its update time) as a catalog entry."""
    product_id, name, price, currency, image_url, url, category = row[:7]
    return Product(
        product_id=product_id,
        name=name,
        price=price,
        currency=currency or None,
        image_url=image_url or None,
        url=url or None,
        category=category or None,
    )
