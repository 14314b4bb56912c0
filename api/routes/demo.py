"""``/demo/``: a small storefront instrumented with the tracker (catalog, product, cart, checkout).

Pages are rendered here from api/static/demo/ with every value HTML-escaped and
strict security headers; the cart and the profile (customer id, masked phone) live in
the browser, orders go through the shop's backend (api/routes/demo_api.py). The write key embedded
in the pages is ``INTENTFLOW_DEMO_WRITE_KEY`` (write keys are public by design);
without it the pages say so and send nothing.
"""

import html
import json
from pathlib import Path
from string import Template
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import RedirectResponse

from api.demo_images import logo_png, product_png
from api.deps import SettingsDep
from api.routing import GuardedRoute
from api.settings import ApiSettings

router = APIRouter(prefix="/demo", include_in_schema=False, route_class=GuardedRoute)

STATIC = Path(__file__).resolve().parent.parent / "static" / "demo"
PAGE = Template((STATIC / "page.html").read_text(encoding="utf-8"))
CATALOG: dict[str, dict[str, Any]] = {
    product["product_id"]: product
    for product in json.loads((STATIC / "catalog.json").read_text(encoding="utf-8"))
}
CURRENCY = "EUR"  # every price in catalog.json
ASSETS = {"demo.js": "text/javascript; charset=utf-8", "demo.css": "text/css; charset=utf-8"}

# Only this origin's scripts, styles and connections; no inline code, no framing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}

NOT_CONFIGURED = "INTENTFLOW_DEMO_WRITE_KEY is not set: this demo sends no events."
e = html.escape  # quotes included: values also land in attributes


def _page(settings: ApiSettings, title: str, content: str, status_code: int = 200) -> Response:
    key = settings.demo_write_key.get_secret_value() if settings.demo_write_key else ""
    notice = "" if key else f'<p class="notice">{NOT_CONFIGURED}</p>'
    body = PAGE.substitute(title=e(title), write_key=e(key), notice=notice, content=content)
    return Response(body, status_code, PAGE_HEADERS, media_type="text/html; charset=utf-8")


def _price(product: dict[str, Any]) -> str:
    return f"{product['price']:.2f} {CURRENCY}"


@router.get("")
async def demo_root() -> RedirectResponse:
    return RedirectResponse("/demo/")


def _picture(p: dict[str, Any], size: int) -> str:
    return (
        f'<img class="picture" src="/demo/images/{e(p["product_id"])}.png" alt="{e(p["name"])}"'
        f' width="{size}" height="{size}">'
    )


@router.get("/")
async def catalog(settings: SettingsDep) -> Response:
    cards = "".join(
        f'<a class="card" href="/demo/product/{e(p["product_id"])}">{_picture(p, 240)}'
        f'<h2>{e(p["name"])}</h2><p>{e(p["blurb"])}</p><p class="price">{e(_price(p))}</p></a>'
        for p in CATALOG.values()
    )
    return _page(settings, "Catalog", f'<h1>Catalog</h1><div class="grid">{cards}</div>')


@router.get("/product/{product_id}")
async def product(product_id: str, settings: SettingsDep) -> Response:
    p = CATALOG.get(product_id)
    if p is None:
        return _page(settings, "Not found", "<h1>No such product</h1>", status_code=404)
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in p["specs"].items())
    content = (
        f'<article class="product" data-if-product-id="{e(p["product_id"])}"'
        f' data-if-category="{e(p["category"])}" data-if-price="{p["price"]}">'
        f'<div class="product-top">{_picture(p, 360)}<div class="buy">'
        f'<h1 id="product-name">{e(p["name"])}</h1><p class="price">{e(_price(p))}</p>'
        f"<p>{e(p['blurb'])}</p>"
        f'<button id="add-to-cart" data-if-track="add_to_cart"'
        f' data-if-prop-product_id="{e(p["product_id"])}" data-if-prop-quantity="1"'
        f' data-if-prop-price="{p["price"]}" data-if-prop-category="{e(p["category"])}"'
        f' data-name="{e(p["name"])}">Add to cart</button> <span id="added" role="status"></span>'
        '<p><a href="/demo/cart" id="go-to-cart">Go to cart</a></p></div></div>'
        '<div class="story"><p>Scroll down for the specifications.</p></div>'
        f'<section id="specs" class="specs" data-if-specs><h2>Specifications</h2>'
        f"<table>{rows}</table></section></article>"
    )
    return _page(settings, p["name"], content)


@router.get("/cart")
async def cart(settings: SettingsDep) -> Response:
    content = (
        '<h1>Your cart</h1><div id="cart" class="cart"></div>'
        '<p><a id="checkout-link" class="button" href="/demo/checkout">Checkout</a></p>'
    )
    return _page(settings, "Cart", content)


@router.get("/checkout")
async def checkout(settings: SettingsDep) -> Response:
    # Who orders and what they agreed to is the profile's (the header's dialog); the
    # order goes through the shop's backend (api/routes/demo_api.py), not the page.
    content = (
        '<h1>Checkout</h1><div id="checkout"><div id="checkout-items" class="cart"></div>'
        '<p id="checkout-who" class="note"></p>'
        '<p><button id="place-order" type="button">Place order</button></p>'
        '<p id="checkout-error" class="error" role="alert" hidden></p>'
        '<p id="vip-result" class="note" hidden></p>'
        '<p id="confirmation" role="status"></p></div>'
    )
    return _page(settings, "Checkout", content)


def demo_products(storefront_url: str) -> list[dict[str, Any]]:
    """The demo shop's catalog as ``PUT /v1/products`` takes it: pages and pictures under
    ``storefront_url`` (the demo's public URL), all served here."""
    base = storefront_url.rstrip("/")
    return [
        {
            "product_id": p["product_id"],
            "name": p["name"],
            "price": p["price"],
            "currency": CURRENCY,
            "image_url": f"{base}/images/{p['product_id']}.png",
            "url": f"{base}/product/{p['product_id']}",
            "category": p["category"],
        }
        for p in CATALOG.values()
    ]


@router.get("/products.json")
async def product_feed(settings: SettingsDep) -> dict[str, Any]:
    """The demo shop's product feed, which the local stack upserts into the catalog."""
    return {"products": demo_products(settings.storefront_url)}


@router.get("/images/{name}.png")
async def image(name: str) -> Response:
    """A product's picture, or the shop's logo (a message's image when its product is unknown)."""
    if name == "logo":
        data = logo_png()
    elif name in CATALOG:
        data = product_png(name, CATALOG[name]["category"])
    else:
        raise HTTPException(404)
    return Response(data, headers=ASSET_HEADERS, media_type="image/png")


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return Response((STATIC / name).read_bytes(), headers=ASSET_HEADERS, media_type=media_type)
