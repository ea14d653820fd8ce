"""A real `python -m service` process on a free loopback port, ready before any test talks to it;
and a headless Chromium for the tests of the pages (/docs, /redoc, /ui).

The browser is Debian's `chromium` (`make test` installs it when it runs as root, as in CI),
driven by Playwright. Without it the browser tests skip on a developer's machine and fail in CI
(CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.support import REPO_ROOT, copy_bundled, environment_without_settings, free_port

READY_DEADLINE_S = 60.0


class ServerProcess:
    """`python -m service` with the given MMOE_* settings; `url` once it answers ready."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        settings = {"MMOE_HOST": "127.0.0.1", "MMOE_PORT": str(self.port)} | env
        clean = environment_without_settings()
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=clean | settings,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Poll /health/ready until it answers 200, the process dies, or the deadline passes."""
        deadline = time.monotonic() + deadline_s
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited at start-up:\n{self.log()}")
                try:
                    if client.get(f"{self.url}/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # polling interval, not synchronisation
        raise TimeoutError(f"the server was not ready within {deadline_s} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextmanager
def serving_bundled(work: Path, settings: dict[str, str]) -> Iterator[ServerProcess]:
    """A ready server of a copy of the bundled models (in work/models), on CPU, with `settings`
    besides; its log is work/server.log. Stopped on leaving."""
    environment = {"MMOE_MODEL_REPOSITORY": str(copy_bundled(work / "models"))}
    process = ServerProcess(environment | {"MMOE_PROVIDER": "cpu"} | settings, work / "server.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A copy of the bundled models, on CPU, with small request limits to test them."""
    settings = {"MMOE_MAX_INSTANCES": "64", "MMOE_MAX_BODY_BYTES": "262144"}
    with serving_bundled(tmp_path_factory.mktemp("server"), settings) as process:
        yield process


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ServerProcess]]:
    """Start servers with given MMOE_* settings (ready when returned); stopped after the test."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str]) -> ServerProcess:
        process = ServerProcess(env, tmp_path / f"server-{len(started)}.log")
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()


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
