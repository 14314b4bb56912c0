"""Segment's own browser client (analytics-next from npm) in headless Chromium, pointed at
``/segment/v1``: a storefront page instrumented for Segment reaches our raw topic unchanged.

The page is served from a second local origin (as a storefront is), so the calls are
cross-origin with a preflight (Basic auth). The client gets its settings inline
(``cdnSettings``): nothing is fetched from Segment's CDN, and the test fails if the page
asks any host other than the two local ones.
"""

import html
import json
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route

from pipeline.local.ports import LOOPBACK, free_port
from tests.collector_server import WRITE_KEY, collector_settings, running_api
from tests.e2e.test_tracker_browser import events_of

UMD = Path(__file__).with_name("segment_js") / "node_modules/@segment/analytics-next/dist/umd"


@pytest.fixture(autouse=True, scope="module")
def analytics_next() -> None:
    if not (UMD / "index.js").exists():  # a failure, not a skip: `make test` installs it
        pytest.fail("needs analytics-next: make segment-js")


PAGE = """<!doctype html>
<html><head><title>Lamp — a Segment storefront</title>
<script src="/umd/index.js"></script>
</head><body><h1>Lamp</h1>
<script>
  window.ajs = AnalyticsNext.AnalyticsBrowser.load({writeKey: "{key}", cdnSettings: {cdn}});
</script>
</body></html>
"""


def page_html(api_host: str, strategy: str) -> str:
    segment_io = {"apiKey": WRITE_KEY, "apiHost": api_host, "protocol": "http"}
    if strategy == "batching":  # one POST to /v1/b every half second
        segment_io["deliveryStrategy"] = {"strategy": "batching", "config": {"timeout": 500}}
    cdn = {
        "integrations": {"Segment.io": segment_io},
        "plan": {},
        "metrics": {"sampleRate": 0},  # no client metrics to Segment
        "remotePlugins": [],
    }
    return PAGE.replace("{key}", html.escape(WRITE_KEY)).replace("{cdn}", json.dumps(cdn))


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[str, dict[str, str]]]:
    """A storefront origin serving the client's files and pages set per test."""
    pages: dict[str, str] = {}

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] in pages:
                body = pages[self.path.split("?")[0]].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def translate_path(self, path: str) -> str:
            if path.startswith("/umd/"):
                return str(UMD / Path(path.split("?")[0]).name)
            return str(UMD / "missing")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, free_port()), partial(Handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}", pages
    finally:
        server.shutdown()


@pytest.mark.parametrize("strategy", ["standard", "batching"])
def test_analytics_next_reaches_the_topic(
    browser: Browser,
    broker: str,
    warehouse: str,
    clickhouse,
    shop: tuple[str, dict[str, str]],
    strategy: str,
):
    origin, pages = shop
    settings = collector_settings(
        broker,
        cors_origins=frozenset({origin}),
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
    )
    with running_api(settings) as api:
        api_host = api.removeprefix("http://") + "/segment/v1"
        path = f"/lamp-{strategy}.html"
        pages[path] = page_html(api_host, strategy)
        page = browser.new_page()
        elsewhere: list[str] = []

        def only_local(route: Route) -> None:
            url = route.request.url
            if url.startswith((origin, api)):
                route.continue_()
            else:
                elsewhere.append(url)
                route.abort()

        page.route("**/*", only_local)
        delivered: list[int] = []
        page.on(
            "response",
            lambda r: r.url.startswith(f"{api}/segment/") and delivered.append(r.status),
        )
        page.goto(f"{origin}{path}")
        user = f"browser-{uuid.uuid4().hex[:8]}"
        anonymous_id = page.evaluate(
            """async (user) => {
              const [analytics] = await window.ajs;
              const anonymousId = analytics.user().anonymousId();
              await analytics.page();
              await analytics.track("Product Viewed",
                {product_id: "lamp-1", name: "Lamp", price: 30, category: "lighting"});
              await analytics.track("Product Added",
                {product_id: "lamp-1", name: "Lamp", price: 30, quantity: 2});
              await analytics.identify(user, {plan: "plus"});
              return anonymousId;
            }""",
            user,
        )
        # A batch goes on its timer. Requests pass through only_local, which runs only
        # while Playwright has this thread: wait for the answers here, not in the consumer.
        for _ in range(150):
            if delivered:
                break
            page.wait_for_timeout(100)
        events = events_of(broker, anonymous_id, lambda found: len(found) >= 4, timeout_s=30)
        page.close()

    names = sorted(e["name"] for e in events)
    assert names == ["add_to_cart", "identify", "page_view", "product_view"], events
    by_name = {e["name"]: e for e in events}
    assert by_name["page_view"]["properties"]["url"] == f"{origin}{path}"
    assert by_name["page_view"]["context"]["page"]["title"] == "Lamp — a Segment storefront"
    assert by_name["product_view"]["properties"] == {
        "product_id": "lamp-1",
        "name": "Lamp",
        "price": 30,
        "category": "lighting",
    }
    assert by_name["add_to_cart"]["properties"]["quantity"] == 2
    assert by_name["identify"]["user_id"] == user
    assert by_name["product_view"]["ip"] == "127.0.0.0"  # a browser's, truncated
    assert elsewhere == [], "the client asked a host other than the shop and the API"
    assert delivered and set(delivered) == {200}
