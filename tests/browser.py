"""A report page opened in a real headless browser (Debian's chromium + chromedriver, through selenium).

``open_in_browser`` skips the calling test with a message where no browser is
installed (CI machines may not have one); where one is, it loads the page,
fails on any JavaScript alert or script element, and writes a screenshot next
to the page.
"""

import shutil
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1280,4000")


def open_in_browser(page: Path, screenshot: Path) -> str:
    """The text of ``page`` as the browser shows it; its screenshot written to ``screenshot``."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: no browser check")
    chromium = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                     if p and Path(p).exists()), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no headless browser here (Debian: apt-get install chromium chromium-driver): report not "
                    "checked in a browser")
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
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
