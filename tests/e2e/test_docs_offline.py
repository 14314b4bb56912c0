"""The API docs render in headless Chromium with every request outside this origin
refused, as on a machine without internet: their bundles are served by the API."""

from urllib.parse import urlparse

from playwright.sync_api import Browser, Route

from tests.collector_server import collector_settings, running_api


def test_swagger_ui_and_redoc_render_without_internet(broker: str, browser: Browser):
    with running_api(collector_settings(broker)) as api:
        origin = urlparse(api).netloc
        outside: list[str] = []
        page = browser.new_page()

        def only_this_origin(route: Route) -> None:
            if urlparse(route.request.url).netloc == origin:
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort("internetdisconnected")

        page.route("**/*", only_this_origin)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{api}/docs")
        page.locator(".swagger-ui .info .title").wait_for(timeout=15_000)
        assert "intentflow" in page.locator(".swagger-ui .info .title").inner_text()
        page.locator(".opblock").first.wait_for(timeout=15_000)
        page.goto(f"{api}/redoc")
        page.locator("h1").first.wait_for(timeout=15_000)
        assert "intentflow" in page.locator("h1").first.inner_text()
        assert outside == []
        # ReDoc's bundle links its own "powered by" logo from its CDN: our CSP refuses it
        # (decoration only). Anything else refused would be a part of the page missing.
        refused = [e for e in errors if "Content Security Policy" in e]
        assert [e for e in refused if "cdn.redoc.ly/redoc/logo-mini.svg" not in e] == []
