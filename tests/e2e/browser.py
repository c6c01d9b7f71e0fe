"""A real headless Chromium driven by selenium (Debian's ``chromium`` + ``chromium-driver``).

Missing on a developer's machine: the test is skipped with the reason; under ``CI=true``
it fails (``.ci/run`` installs both).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.services import in_ci

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
)


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> tuple[str, str]:
    browser = _binary("chromium", "chromium-browser")
    driver = _binary("chromedriver")
    if browser and driver:
        return browser, driver
    reason = "no headless browser: install Debian's chromium and chromium-driver"
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing browser fails the run)")
    pytest.skip(reason)


@contextmanager
def chromium(profile: Path, *extra_flags: str, log: Path | None = None) -> Iterator[object]:
    """A fresh browser with a profile of its own (and ``extra_flags``); quits (and so ends
    its processes) after. ``log``: where chromedriver writes its log."""
    browser, driver_path = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, *extra_flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=driver_path, log_output=str(log) if log else None)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
