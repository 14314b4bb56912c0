"""Fixtures of the browser tests: one Chromium per module, and a watched page."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, Watched

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):  # a failure, not a skip: `make test` installs it
        pytest.fail("needs Debian's chromium: make chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context whose watch is ``page.watched`` (see ``assert_clean``)."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    watched = Watched(context)
    opened = context.new_page()
    opened.watched = watched  # type: ignore[attr-defined]
    yield opened
    context.close()
