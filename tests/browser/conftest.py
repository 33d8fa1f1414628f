"""Fixtures: Debian's Chromium through its chromedriver, on the app a test module names.

Each test module sets `APP` to an image name; the app's base URL comes from `<APP>_URL` (`FAKE_SHOP_URL` for
fake-shop), which `cargo xtask test browser` sets after starting the built image, and its screenshots go to
`$BROWSER_SCREENSHOTS/<APP>/` (`out/browser/<APP>/` by default).

Without the browser, the driver or the URL a test is skipped with the reason, except under CI (`CI=true` or
`CI=1`), where that is a failure: CI must never pass by skipping the browser tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from browsing import Browser, Screenshots

REPOSITORY = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))

CHROMIUM_FLAGS = [
    "--headless=new",
    # Chromium refuses to start as root with its sandbox, and the Ubuntu 24.04 runners forbid the user
    # namespaces it needs; the only pages it opens are the apps under test.
    "--no-sandbox",
    "--disable-gpu",
    # Docker's /dev/shm is 64 MB, too small for the renderer's shared memory.
    "--disable-dev-shm-usage",
    # Chromium's own calls home (field trials, component and extension updates, sync, QUIC probes): the test
    # machines refuse them, and a refused call can stall a page.
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    # Every page is on this machine; a proxy from the environment would only be in the way.
    "--no-proxy-server",
    # The same layout in every screenshot.
    "--window-size=1280,900",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def unavailable(reason: str) -> NoReturn:
    """Skips the test, or fails it under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI must run the browser tests)", pytrace=False)
    pytest.skip(reason)


def url_variable(app: str) -> str:
    # As xtask/src/stages/test/browser.rs names them.
    return app.upper().replace("-", "_") + "_URL"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # The test's own outcome, kept on the item: the `browser` fixture takes a screenshot of a failure before it closes.
    report = yield
    if report.when == "call":
        item.call_report = report
    return report


@pytest.fixture(scope="session")
def screenshots_of():
    """The numbered screenshot sequence of an app, one per app over the whole run."""
    root = Path(os.environ.get("BROWSER_SCREENSHOTS", REPOSITORY / "out" / "browser"))
    sequences: dict[str, Screenshots] = {}

    def sequence(app: str) -> Screenshots:
        if app not in sequences:
            sequences[app] = Screenshots(root / app)
        return sequences[app]

    return sequence


@pytest.fixture
def browser(request, tmp_path, screenshots_of) -> Iterator[Browser]:
    """A fresh Chromium (own profile: no cookie, no cart) on the app of the test's module."""
    app = request.module.APP
    base_url = os.environ.get(url_variable(app))
    if not base_url:
        unavailable(f"{url_variable(app)} is not set: `cargo xtask test browser` starts {app} and sets it")
    for program, package in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]:
        if not os.access(program, os.X_OK):
            unavailable(f"{program} not found: install the Debian package {package} (.ci/run does)")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    # A driver path of our own keeps Selenium Manager from running: it would look for, and download, a browser.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser = Browser(driver, base_url, screenshots_of(app))
    try:
        yield browser
        report = getattr(request.node, "call_report", None)
        if report is not None and report.failed:
            browser.screenshot(f"failed-{request.node.name}")
    finally:
        driver.quit()
