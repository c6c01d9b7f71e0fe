"""/docs and /redoc render in a real headless browser with no network but loopback.

The API runs as a process (``uvicorn app.main:app``); Debian's ``chromium``, driven by
selenium through ``chromium-driver``, resolves no host name but 127.0.0.1, so a page that
needs a CDN stays blank and the test fails. Without chromium the test skips with the
reason; under ``CI=true`` it fails (``.ci/run`` installs chromium).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import migrate
from tests.e2e.browser import chromium
from tests.support.processes import free_port, processes

pytestmark = pytest.mark.e2e

# Offline but for loopback: any other host name fails to resolve.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
# Everything a page may take time for (the browser's start, a 1.5 MB script) has this long.
TIMEOUT = 30
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("docs")
    url = f"sqlite:///{tmp / 'docs.db'}"
    migrate(url)
    # No broker is needed to serve the documentation; none answers on this port.
    env = {"DATABASE_URL": url, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    port = free_port()
    with processes(env, tmp) as group:
        group.api(port)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    with chromium(tmp_path / "profile", OFFLINE, log=tmp_path / "chromedriver.log") as driver:
        driver.set_page_load_timeout(TIMEOUT)  # type: ignore[attr-defined]
        yield driver


def _wait_for(driver: object, css: str) -> str:
    """The text of the first element matching ``css``, once the page has rendered one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    element = WebDriverWait(driver, TIMEOUT).until(  # type: ignore[arg-type]
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    return str(element.text)


def _external(driver: object, base_url: str) -> list[tuple[str, str]]:
    """(URL, kind) of what the page requested from anywhere but ``base_url``.

    ReDoc's bundle always asks for its attribution logo from its vendor's host, and hides
    it when that fails (``onError``): the one image allowed to be missing offline.
    """
    script = "return performance.getEntriesByType('resource').map(e => [e.name, e.initiatorType])"
    entries = driver.execute_script(script)  # type: ignore[attr-defined]
    return [
        (url, kind)
        for url, kind in entries
        if not url.startswith(base_url) and (url, kind) != (REDOC_LOGO, "img")
    ]


def _requested(driver: object) -> list[str]:
    script = "return performance.getEntriesByType('resource').map(e => e.name)"
    return list(driver.execute_script(script))  # type: ignore[attr-defined]


def test_swagger_ui_renders_the_operations_offline(browser: object, base_url: str) -> None:
    browser.get(f"{base_url}/docs")  # type: ignore[attr-defined]
    path = _wait_for(browser, '.opblock.opblock-post .opblock-summary-path[data-path="/issues"]')
    assert path.replace("\u200b", "") == "/issues"
    assert "/issues/{issue_id}/runs" in browser.page_source  # type: ignore[attr-defined]
    assert f"{base_url}/openapi.json" in _requested(browser)
    assert _external(browser, base_url) == []


def test_redoc_renders_the_operations_offline(browser: object, base_url: str) -> None:
    browser.get(f"{base_url}/redoc")  # type: ignore[attr-defined]
    # ReDoc gives each operation a section; its heading is the operation's summary.
    heading = _wait_for(browser, '[data-section-id="tag/issues/operation/create_issues_post"] h2')
    assert heading == "Create"
    assert f"{base_url}/openapi.json" in _requested(browser)
    assert _external(browser, base_url) == []


def test_chromium_cannot_reach_other_hosts(browser: object) -> None:
    """The offline claim rests on this: a CDN host does not resolve in this browser."""
    from selenium.common.exceptions import WebDriverException

    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        browser.get("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js")  # type: ignore[attr-defined]
