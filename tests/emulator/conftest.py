"""Fixtures for the emulator's own tests.

The ``toloka_emulator`` fixture is imported from the plugin module rather than named in ``pytest_plugins``:
pytest refuses ``pytest_plugins`` in a conftest below the rootdir, and once the package is installed the
``pytest11`` entry point registers the same module, which ``pytest_plugins`` would register a second time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_toloka.emulator.pytest_plugin import toloka_emulator  # noqa: F401 (fixture)
from airflow_provider_toloka.emulator.server import TolokaEmulator


class Api:
    """A tiny client for the emulator's ``/api/v1``, authorised like the provider's hook."""

    def __init__(self, emulator: TolokaEmulator, scheme: str = "OAuth") -> None:
        self.base = f"{emulator.url}/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"{scheme} {emulator.token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=10)

    def post(self, path: str) -> requests.Response:
        return self.session.post(self.base + path, timeout=10)

    def wait(self, operation_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll an operation until it is SUCCESS or FAIL."""
        deadline = time.monotonic() + timeout
        while True:
            operation = self.get(f"/operations/{operation_id}").json()
            if operation["status"] in ("SUCCESS", "FAIL") or time.monotonic() > deadline:
                return operation
            time.sleep(0.02)


@pytest.fixture
def api(toloka_emulator: TolokaEmulator) -> Iterator[Api]:  # noqa: F811 (the fixture imported above)
    client = Api(toloka_emulator)
    yield client
    client.session.close()


@pytest.fixture
def stopped_api(stopped_clock_emulator: TolokaEmulator) -> Iterator[Api]:
    """``Api`` on the emulator whose clock moves only by ``advance_clock`` (``stopped_clock_emulator``)."""
    client = Api(stopped_clock_emulator)
    yield client
    client.session.close()
