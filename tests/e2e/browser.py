"""Headless Chromium for the browser tests: where it is, how it starts, and the watch
every page carries (CSP violations, console errors, failed responses).

Debian's chromium is installed by ``make chromium`` (part of ``make test``); Playwright
cannot download browsers on these machines.
"""

from playwright.sync_api import BrowserContext, Page

from tests import support

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# For a reviewer; gitignored.
SCREENSHOTS = support.PROJECT_ROOT / "test-output" / "screenshots"

# Every CSP violation a page sees, recorded before any of its own scripts run.
_RECORD_CSP = (
    'window.__csp = []; document.addEventListener("securitypolicyviolation",'
    ' (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));'
)


class Watched:
    """The pages of one browser context, each recording CSP violations and errors."""

    def __init__(self, context: BrowserContext, accept_dialogs: bool = False) -> None:
        self.context = context
        self.errors: list[str] = []
        self.accept_dialogs = accept_dialogs
        context.add_init_script(_RECORD_CSP)
        context.on("page", self._watch)

    def _watch(self, page: Page) -> None:
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"{m.text} at {m.location}") if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        if self.accept_dialogs:  # the console's "are you sure?" confirmations
            page.on("dialog", lambda dialog: dialog.accept())

    def assert_clean(self, page: Page) -> None:
        assert page.evaluate("window.__csp") == []
        # Chromium asks the API's origin for /favicon.ico on its own while following our
        # /v1/r/ redirect: no page asked for it.
        errors = [e for e in self.errors if "/favicon.ico" not in e]
        assert errors == [], errors


def assert_clean(page: Page) -> None:
    """No CSP violation and no error on a page from the ``page`` fixture."""
    page.watched.assert_clean(page)  # type: ignore[attr-defined]


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
