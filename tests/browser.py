"""Pages checked in a real browser: Debian's headless Chromium driven by Selenium, offline.

Used by the report and study tests (the ``browser`` fixture) and run as a script to write the
documentation's screenshots: ``python tests/browser.py PAGE.html OUT.png [WIDTH]``.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def chromium(user_data_dir: Path, width: int = 1400):
    """Selenium driving Debian's Chromium through its matching chromedriver, offline."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        reason = f"headless browser check needs {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("ENDOCTL_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; ENDOCTL_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},1000",
        f"--user-data-dir={user_data_dir}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def load_page(driver, url: str) -> list[str]:
    """Load ``url``; images that did not load and console warnings or errors, as problems."""
    driver.get_log("browser")  # drop anything from an earlier page
    driver.get(url)
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    problems = [f"image not loaded: {src}" for src in broken]
    return problems + [
        f"console {e['level']}: {e['message']}"
        for e in driver.get_log("browser")
        if e["level"] in ("SEVERE", "WARNING")
    ]


def full_page(driver, scale: float = 0.5) -> Image.Image:
    """The whole page (beyond the window), at ``scale``."""
    width, height = driver.execute_script("return [document.body.scrollWidth, document.body.scrollHeight]")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": scale},
        },
    )
    return Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")


def blank(image: Image.Image) -> list[str]:
    """A problem when the screenshot is (nearly) one colour: a page that did not render."""
    pixels = np.asarray(image, dtype=np.uint32)
    colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    return [f"the page looks blank ({len(colours)} colours)"] if pixels.std() < 20 or len(colours) < 1000 else []


if __name__ == "__main__":
    page, out = Path(sys.argv[1]), Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(Path(profile), int(sys.argv[3]) if len(sys.argv) > 3 else 1400)
        try:
            problems = load_page(driver, page.resolve().as_uri())
            if problems:
                sys.exit("; ".join(problems))
            full_page(driver, 1.0).save(out, optimize=True)
        finally:
            driver.quit()
    print(f"{page} -> {out}")
