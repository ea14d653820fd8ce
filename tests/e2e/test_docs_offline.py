"""/docs and /redoc render in a real browser with the network cut off: every request to anything
but the server is blocked, and every operation of the schema still shows.

The browser is Debian's `chromium` (`make test` installs it when it runs as root, as in CI),
driven by Playwright. Without it the tests skip on a developer's machine and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

RENDER_TIMEOUT_MS = 30_000


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = (
            "Debian's chromium is not installed: apt-get install chromium (make test installs it "
            "when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    arguments = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=arguments)
        try:
            yield launched
        finally:
            launched.close()


def offline_page(browser: Browser, server_url: str) -> tuple[Page, list[str]]:
    """A page whose requests reach the server only; the list collects every blocked URL."""
    page = browser.new_page()
    blocked: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(f"{server_url}/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    return page, blocked


def operations(server_url: str) -> list[tuple[str, str]]:
    schema = httpx.get(f"{server_url}/openapi.json").json()
    return sorted(
        (method.upper(), path) for path, methods in schema["paths"].items() for method in methods
    )


def test_swagger_ui_renders_every_operation_offline(server: Any, browser: Browser) -> None:
    page, blocked = offline_page(browser, server.url)
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=RENDER_TIMEOUT_MS)
    rendered = sorted(
        (
            block.locator(".opblock-summary-method").inner_text(),
            block.locator(".opblock-summary-path").get_attribute("data-path") or "",
        )
        for block in page.locator(".opblock-summary").all()
    )
    assert rendered == operations(server.url)
    assert blocked == []
    page.close()


def test_redoc_renders_every_operation_offline(server: Any, browser: Browser) -> None:
    page, blocked = offline_page(browser, server.url)
    page.goto(f"{server.url}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=RENDER_TIMEOUT_MS)
    schema = httpx.get(f"{server.url}/openapi.json").json()
    operation_ids = sorted(
        operation["operationId"]
        for methods in schema["paths"].values()
        for operation in methods.values()
    )
    sections = page.locator("[data-section-id^='operation/']").all()
    rendered = sorted(
        (section.get_attribute("data-section-id") or "").removeprefix("operation/")
        for section in sections
    )
    assert rendered == operation_ids
    assert page.locator("[data-section-id='operation/predict_route_predict_post'] h2").inner_text()
    assert blocked == []
    page.close()


def test_the_pages_forbid_loading_anything_from_elsewhere(server: Any) -> None:
    for path in ("/docs", "/redoc"):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "https://" not in response.text and "http://" not in response.text
