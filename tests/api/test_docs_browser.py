"""The docs page as a developer meets it: rendered by a real Chromium, not fetched as bytes.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it when missing); Playwright only
drives it. Without a browser the tests skip locally and fail in CI (``CI`` set), so the
docs can never silently stop rendering again.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags that keep Chromium off the network it does not have here.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("Debian's chromium is required in CI (.ci/run installs it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")


@pytest.fixture(scope="module")
def live_server(app: Flask) -> Iterator[str]:
    """The test app on a real loopback HTTP server, for the browser."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class PageWatch:
    """What a page asked for and complained about while it was open."""

    def __init__(self, page: Any) -> None:
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)


def _open_docs(browser: Any, live_server: str) -> tuple[Any, PageWatch]:
    page = browser.new_page()
    watch = PageWatch(page)
    page.goto(f"{live_server}/")  # the root redirects to the docs
    assert page.url == f"{live_server}/docs"
    page.wait_for_selector(".opblock", timeout=30_000)
    return page, watch


def test_docs_render_every_operation_offline(browser, live_server, client):
    spec = client.get("/openapi.json").json
    operations = {(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item if method in {"get", "post", "put", "patch", "delete"}}
    page, watch = _open_docs(browser, live_server)
    try:
        body = page.inner_text("body")
        assert "Unable to render" not in body
        assert page.locator(".errors-wrapper").count() == 0
        assert "ClinAI API" in page.inner_text(".info .title")
        shown = set()
        for block in page.locator(".opblock").all():
            method = block.locator(".opblock-summary-method").inner_text().strip()
            path = block.locator(".opblock-summary-path").get_attribute("data-path")
            shown.add((method, path))
        assert shown == operations
        # Offline: nothing but this origin was asked for, and nothing went wrong.
        assert watch.requests
        assert all(url.startswith(live_server) for url in watch.requests), watch.requests
        assert watch.problems == []
    finally:
        page.close()


def test_authorize_button_makes_try_it_out_work(browser, live_server, make_practice):
    practice = make_practice(name="Praxis Browser-Test")
    page, watch = _open_docs(browser, live_server)
    try:
        page.click("button.authorize")
        bearer = page.locator(".auth-container").filter(has_text="bearerAuth")
        bearer.locator("input").fill(practice.admin.token)
        bearer.locator("button.authorize").click()
        page.click("button.btn-done")

        operation = page.locator(".opblock-get").filter(
            has=page.locator('.opblock-summary-path[data-path="/api/v1/tenant"]'))
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        status = operation.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=30_000)
        assert status.inner_text().strip() == "200"
        assert "Praxis Browser-Test" in operation.locator(
            ".live-responses-table tbody .response-col_description").first.inner_text()
        assert watch.problems == []
    finally:
        page.close()
