"""/docs and /redoc render in a real browser with the network cut off: every request to anything
but the server is blocked, and every operation of the schema still shows.

The browser is Debian's `chromium` (`make test` installs it when it runs as root, as in CI),
driven by Playwright. Without it the tests skip on a developer's machine and fail in CI (CI=true).
"""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Browser

from tests.e2e.conftest import offline_page

RENDER_TIMEOUT_MS = 30_000


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
