"""The ``toloka_emulator`` fixture, registered through the ``pytest11`` entry point of the installed package.

The server module is imported inside the fixture so that merely having the plugin installed costs a test run
nothing: FastAPI and uvicorn load only for tests that ask for the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_toloka.emulator.server import TolokaEmulator


@pytest.fixture
def toloka_emulator() -> Iterator[TolokaEmulator]:
    """A started emulator with fast operations (0.2 s), stopped after the test."""
    from airflow_provider_toloka.emulator.server import TolokaEmulator

    with TolokaEmulator(operation_duration=0.2) as emulator:
        yield emulator
