"""The Toloka connection form in Airflow's own UI, driven in headless Chromium.

Starts ``airflow api-server`` on a free loopback port with a throw-away SQLite home, opens
*Admin → Connections → Add Connection*, picks the Toloka type and checks what a user sees; then
saves a connection and reads it back to prove the form stores the extras where the hook reads them.
A missing Chromium skips the test on a developer's machine and fails it in CI (``CI=true`` or
``TOLOKA_REQUIRE_BROWSER_TEST=1``, which ``.ci/run`` sets).
The screenshot goes to pytest's temporary folder; with ``TOLOKA_UPDATE_SCREENSHOT=1`` it replaces
``docs/connection-form.png``, so an ordinary test run never changes the work tree.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("TOLOKA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXTRA_FIELD_LABELS = (
    *("Environment", "Authorization scheme", "Web UI base URL", "Act under account"),
    *("Retries", "Request timeout (seconds)", "Requests per second", "Rate limit storage"),
    "Rate limit storage password",
)
STORE_PASSWORD = "store-pw-in-the-form-93"
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "connection-form.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (.ci/run does)"
        # In CI a missing browser is a failure, never a quiet skip (as the production test's guard).
        if os.environ.get("TOLOKA_REQUIRE_BROWSER_TEST") or os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # SimpleAuthManager without a login page: every visitor is admin (loopback only).
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
    )
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    log = (home / "api-server.log").open("w")
    server = subprocess.Popen(
        # One worker: Airflow 3.0 starts four by default, and on a busy machine uvicorn's supervisor
        # restarts each one that takes longer than its health check to import Airflow, for ever.
        [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # A hang guard, not a timing claim: on a busy 2-core machine Airflow 3.0 takes minutes to start.
    deadline = time.monotonic() + 600
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"api-server did not start: {(home / 'api-server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900},
        )
        yield browser.new_page()
        browser.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def session_token(page) -> str | None:
    """The UI's session token: Airflow 3.0 keeps it in local storage; 3.3 needs none when all are admins."""
    return page.evaluate("localStorage.getItem('token')")


def show_whole_form(page, dialog) -> None:
    """Make the window tall enough for the whole dialog, so every extra field is in the screenshot.

    The dialog scrolls inside a window of the viewport's height, so a page screenshot (even ``full_page``)
    stopped at the fifth extra field. (Only one field group opens at a time: Standard Fields, the host
    override and the token, stays closed in the picture.)
    """
    # Taller than the open dialog needs (about 1300 px): the screenshot is of the dialog alone.
    page.set_viewport_size({"width": 1100, "height": 2400})
    # In the picture: every field and the Save button wholly inside the window, none scrolled away
    # (expect retries until the page has laid itself out again after the resize).
    from playwright.sync_api import expect

    for label in EXTRA_FIELD_LABELS:
        expect(dialog.get_by_text(label, exact=True)).to_be_in_viewport(ratio=1)
    expect(dialog.get_by_role("button", name="Save")).to_be_in_viewport(ratio=1)


def labels_once_drawn(page, dialog, wanted: tuple[str, ...], timeout: float = 60.0) -> list[str]:
    """The dialog's field labels once all of ``wanted`` are drawn, or as they are after ``timeout`` seconds.

    After the type is picked the form redraws with that type's fields, in the page's own time: the labels
    read at once, on a busy machine, were still the form before it.
    """
    deadline = time.monotonic() + timeout
    while True:
        labels = [label.inner_text().strip(" *\n") for label in dialog.locator("label").all()]
        if set(wanted) <= set(labels) or time.monotonic() > deadline:
            return labels
        page.wait_for_timeout(100)


def test_toloka_connection_form(api_server, page, tmp_path):
    # The first visit signs in (every visitor is admin here) through a redirect the page's script starts;
    # Airflow 3.0 then lands on its home page, not on the page asked for. So sign in on the home page
    # first, and open the connections afterwards.
    page.goto(api_server)
    page.get_by_role("heading", name="Welcome").wait_for()
    page.wait_for_load_state("networkidle")
    page.goto(f"{api_server}/connections", wait_until="networkidle")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill("toloka_ui")
    dialog.get_by_role("combobox").first.fill("Toloka")
    page.keyboard.press("Enter")

    wanted = ("Host override", "API token", *EXTRA_FIELD_LABELS)
    labels = labels_once_drawn(page, dialog, wanted)
    for label in wanted:
        assert label in labels
    for hidden in ("Login", "Port", "Schema"):
        assert hidden not in labels
    token = dialog.locator("input[name=password]")
    assert token.get_attribute("type") == "password"
    assert "OAuth token or API key" in token.get_attribute("placeholder")
    assert "127.0.0.1:8765" in dialog.locator("input[name=host]").get_attribute("placeholder")

    token.fill("secret-token")
    dialog.get_by_text("Extra Fields", exact=True).click()
    dialog.get_by_text("Authorization scheme").wait_for()
    # The store's password: saved, and answered as *** by the REST API below (so by the form that edits it
    # later). The input itself is masked from Airflow 3.3 (``format: password``); 3.0-3.2 draw every
    # extra field as plain text. (The form names an extra field's input element_<field>.)
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

    store_password = dialog.locator("input[name=element_rate_limit_storage_password]")
    assert store_password.get_attribute("type") == ("password" if AIRFLOW_V_3_3_PLUS else None)
    dialog.locator("input[name=element_requests_per_second]").fill("100")
    dialog.locator("input[name=element_rate_limit_storage_uri]").fill("redis://redis.internal:6379/3")
    store_password.fill(STORE_PASSWORD)
    screenshot = DOCS_SCREENSHOT if os.environ.get("TOLOKA_UPDATE_SCREENSHOT") else tmp_path / "form.png"
    show_whole_form(page, dialog)
    dialog.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
    dialog.get_by_role("button", name="Save").click()
    page.get_by_text("toloka_ui").first.wait_for()

    # With the UI's own session token: Airflow 3.0's API wants one even when every visitor is admin.
    token = session_token(page)
    request = urllib.request.Request(
        f"{api_server}/api/v2/connections/toloka_ui",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    with urllib.request.urlopen(request) as answer:
        saved = json.load(answer)
    assert saved["conn_type"] == "toloka"
    assert json.loads(saved["extra"]).items() >= {"environment": "production", "auth_scheme": "OAuth"}.items()
    # Airflow's own redaction, by the extra's name: no sensitive_var_conn_names is configured here.
    assert json.loads(saved["extra"])["rate_limit_storage_password"] == "***"
    assert STORE_PASSWORD not in json.dumps(saved)
    # What the form saved is what the hook understands.
    from airflow.sdk import Connection

    from airflow_provider_toloka.connection import TolokaConnectionSettings

    conn = Connection(conn_id="toloka_ui", conn_type="toloka", password="secret-token", extra=saved["extra"])
    settings = TolokaConnectionSettings.from_connection(conn)
    assert settings.api_url == "https://toloka.dev/api/v1"
    assert settings.ui_base_url == "https://platform.toloka.ai"
    # An untouched *Act under account* field (saved as "" or left out) is the token's own account: no header.
    assert settings.act_under_account_id is None
    assert "X-Act-Under-Account-ID" not in settings.headers
    assert settings.rate_limit_storage_uri == "redis://redis.internal:6379/3"
