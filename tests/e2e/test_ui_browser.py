"""The run page in a real headless browser, against the API and a worker as processes.

The worker calls a fake OpenAI-compatible server whose tag call hangs until the test lets
it answer, so the page is open while the run is still going.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import chromium
from tests.e2e.conftest import StackFactory
from tests.e2e.fake_llm import FakeLLM
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

KEY = "ui-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
XSS = "<script>alert(1)</script>"


def text_of(driver: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def wait_text(driver: Any, selector: str, expected: str, timeout: float = 30) -> None:
    def check() -> bool:
        try:
            return expected in text_of(driver, selector)
        except Exception:  # not rendered yet
            return False

    wait_until(check, timeout=timeout, what=f"{selector!r} to show {expected!r}")


def stage_state(driver: Any, stage: str) -> str:
    return text_of(driver, f'tr[data-stage="{stage}"] [data-field="state"]')


def test_run_page_follows_a_run_live_and_cancels_another(
    make_stack: StackFactory, fake: FakeLLM, tmp_path: Path
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    stack = make_stack(llm=fake, env={"API_KEYS": KEY})
    stack.api()
    stack.worker(None, concurrency=2)  # prefork: each child listens for stops on its own

    def create(title: str) -> dict[str, Any]:
        response = stack.http.post(
            f"{stack.base}/issues",
            json={"title": title, "body": "Saving a file with an emoji in its name crashes."},
            headers=AUTH,
        )
        assert response.status_code == 201, response.text
        return response.json()

    # The tag call fails once (503), then hangs until the test lets it answer.
    fake.set_mode("hang", op="tag")
    fake.set_mode("503", op="tag", times=1)
    watched = create("App crashes when saving a file with an emoji in its name")
    with chromium(tmp_path / "profile") as driver:
        driver.get(f"{stack.base}/ui/runs/{watched['task_id']}")
        wait_text(driver, "#live", "live")
        wait_text(driver, 'tr[data-stage="tag"] [data-field="retries"]', "1")
        wait_text(driver, 'tr[data-stage="tag"] [data-field="state"]', "STARTED")
        assert stage_state(driver, "summarise") == "SUCCESS"
        assert "503" in text_of(driver, 'tr[data-stage="tag"] [data-field="error"]')

        # The provider answers: the page reaches SUCCESS without a reload.
        driver.execute_script("window.stillThisPage = true;")
        fake.release()
        wait_text(driver, "#run-state", "SUCCESS")
        wait_text(driver, "#live", "ended")
        assert driver.execute_script("return window.stillThisPage === true;")
        assert [stage_state(driver, s) for s in ("summarise", "tag", "persist")] == [
            "SUCCESS",
            "SUCCESS",
            "SUCCESS",
        ]
        assert "bug" in text_of(driver, "#result")
        shots = os.environ.get("UI_SCREENSHOT_DIR")
        if shots:
            driver.save_screenshot(str(Path(shots) / "run-page.png"))

        # Readable on a phone: nothing wider than the screen.
        driver.set_window_size(390, 844)
        driver.refresh()
        wait_text(driver, "#run-state", "SUCCESS")
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth;"
        )
        driver.set_window_size(1100, 900)

        # Another run, cancelled from its page while its tag call hangs.
        fake.set_mode("hang", op="tag")
        other = create("Cancel me")
        driver.get(f"{stack.base}/ui/runs/{other['task_id']}")
        wait_text(driver, 'tr[data-stage="tag"] [data-field="state"]', "STARTED")
        cancel = driver.find_element(By.CSS_SELECTOR, 'button[data-action="cancel"]')
        cancel.click()  # without the key first: the page asks for it
        wait_text(driver, "#notice", "needs the API key")
        assert driver.switch_to.active_element.get_attribute("id") == "api-key"
        driver.switch_to.active_element.send_keys(KEY, Keys.ENTER)  # submits the key form
        wait_text(driver, "#notice", "kept in this tab")
        cancel.send_keys(Keys.ENTER)  # buttons work from the keyboard
        wait_text(driver, "#run-state", "REVOKED")
        wait_text(driver, "#run-error", "cancelled")
        assert [stage_state(driver, s) for s in ("summarise", "tag", "persist")] == [
            "SUCCESS",
            "REVOKED",
            "REVOKED",
        ]
        assert not cancel.is_enabled()
        # The worker's stage stopped waiting on the provider: its run stays cancelled.
        status = stack.task(other["task_id"])
        assert (status["state"], status["error"]) == ("REVOKED", "cancelled")

        # Issue text is shown as text, never run as a script, on every page.
        fake.release()  # the cancelled run's call answers too: its answer is dropped
        hostile = create(XSS)
        for path in ("/ui/", f"/ui/issues/{hostile['issue']['id']}"):
            driver.get(f"{stack.base}{path}")
            assert XSS in text_of(driver, "main")
            with pytest.raises(NoAlertPresentException):
                driver.switch_to.alert.text  # noqa: B018
        driver.get(f"{stack.base}/ui/runs/{hostile['task_id']}")
        wait_text(driver, "#live", "ended")
        assert XSS in text_of(driver, "h1 + dl a")
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
