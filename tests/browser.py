"""A report page opened in a real headless browser (Debian's chromium + chromedriver, through selenium), 1280 px wide.

``open_in_browser`` skips the calling test with a message where no browser is
installed, unless ``FEDSIM_REQUIRE_BROWSER=1`` (CI installs one and sets it:
there a missing browser fails the test); where one is, it loads the page,
fails on any JavaScript alert or script element, and writes a screenshot next
to the page. ``widths`` also gives the width of every table and of the page.
"""

import os
import shutil
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1280,4000")


def _driver():
    """A headless Chromium driver, or a skip (a failure under FEDSIM_REQUIRE_BROWSER=1) without one."""
    required = os.environ.get("FEDSIM_REQUIRE_BROWSER") == "1"
    try:
        from selenium import webdriver
    except ImportError:
        (pytest.fail if required else pytest.skip)("selenium not installed: no browser check")
    chromium = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                     if p and Path(p).exists()), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        (pytest.fail if required else pytest.skip)(
            "no headless browser here (Debian: apt-get install chromium chromium-driver): report not checked in a "
            "browser")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver_path))


def widths(page: Path) -> tuple[list[int], int]:
    """The rendered width of every table of ``page`` (its full width, scrolled part included) and the width of
    the page's content column, in CSS pixels, in a 1280 px wide window."""
    driver = _driver()
    try:
        driver.get(page.resolve().as_uri())
        tables = driver.execute_script("return [...document.querySelectorAll('table')].map(t => t.scrollWidth)")
        body = driver.execute_script("return document.body.clientWidth")
    finally:
        driver.quit()
    return list(tables), int(body)


def open_in_browser(page: Path, screenshot: Path) -> str:
    """The text of ``page`` as the browser shows it; its screenshot written to ``screenshot``."""
    driver = _driver()
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    try:
        driver.get(page.resolve().as_uri())
        try:
            alert = driver.switch_to.alert
            pytest.fail(f"{page.name}: the page opened a JavaScript alert ({alert.text!r})")
        except NoAlertPresentException:
            pass
        assert driver.find_elements(By.TAG_NAME, "script") == [], f"{page.name} holds a script element"
        assert driver.execute_script("return document.links.length") == 0, f"{page.name} holds a link"
        text = driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return text
