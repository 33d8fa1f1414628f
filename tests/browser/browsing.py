"""One app seen through Chromium: open pages, follow forms, wait for what a visitor would see, take screenshots."""

from __future__ import annotations

import base64
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

# Generous: CI runs this on 2 busy cores, and every wait ends as soon as its condition holds.
WAIT_SECONDS = 20


class Screenshots:
    """The numbered screenshots of one app, `<folder>/<nn>-<step>.png`, in the order the tests take them."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        # A run starts a fresh sequence: a step left from an earlier run would read as part of this one.
        for stale in folder.glob("*.png"):
            stale.unlink()
        self.taken = 0

    def take(self, driver: WebDriver, step: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{step}.png"
        path.write_bytes(full_page_png(driver))
        return path


def full_page_png(driver: WebDriver) -> bytes:
    """The whole page, not only the window: the checkout form with its errors is taller than any window."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"clip": clip, "captureBeyondViewport": True})
    return base64.b64decode(shot["data"])


class Browser:
    """A Chromium window on one app at `base_url`. Every lookup waits for its element to be visible, and
    every link or form followed waits for the page the server answers with: no test sleeps."""

    def __init__(self, driver: WebDriver, base_url: str, screenshots: Screenshots):
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.screenshots = screenshots
        self.wait = WebDriverWait(driver, WAIT_SECONDS)

    def open(self, path: str) -> None:
        # get() returns once the page has loaded.
        self.driver.get(self.base_url + path)

    def find(self, css: str, within: WebElement | None = None) -> WebElement:
        """The first visible element matching `css` (inside `within` when given)."""
        scope = within or self.driver

        def first_visible(_driver) -> WebElement | None:
            visible = (element for element in scope.find_elements(By.CSS_SELECTOR, css) if element.is_displayed())
            return next(visible, None)

        return self.wait.until(first_visible, message=f"nothing visible matches {css!r}")

    def find_all(self, css: str) -> list[WebElement]:
        """The elements matching `css`, once at least one is visible."""
        self.find(css)
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait_for_text(self, css: str, text: str) -> None:
        """Waits until the page's script has made the element matching `css` show `text`."""
        self.wait.until(lambda _: self.text(css) == text, message=f"{css!r} never showed {text!r}")

    def follow(self, link_or_button: WebElement) -> None:
        """Clicks a link or a form's button, and waits until the page the server answers with has loaded."""
        old_page = self.driver.find_element(By.TAG_NAME, "html")
        link_or_button.click()
        self.wait.until(expected_conditions.staleness_of(old_page))
        self.wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")

    def fill(self, form: WebElement, entries: dict[str, str]) -> None:
        """Types each entry into the form's field of that name, replacing what it held."""
        for name, value in entries.items():
            field = self.find(f'[name="{name}"]', within=form)
            field.clear()
            field.send_keys(value)

    def screenshot(self, step: str) -> Path:
        return self.screenshots.take(self.driver, step)
