"""Test set-up shared by every test: a throw-away AIRFLOW_HOME and the Toloka emulator fixture."""

from __future__ import annotations

import os
import tempfile
import time

# Airflow reads its configuration on import: point it at a throw-away home before any test imports it.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="toloka-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# A DAG file's first parse imports Airflow itself; on a busy 2-core machine that outgrew the 30 s default.
os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
# dag.test() syncs the DAG folder to the metadata DB and runs the DAG from there.
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(os.path.dirname(__file__), os.pardir, "example_dags")
os.environ.pop("AIRFLOW_CONN_TOLOKA_DEFAULT", None)

import pytest  # noqa: E402

# The ``toloka_emulator`` fixture comes from the package's ``pytest11`` entry point.


@pytest.fixture
def toloka_conn(toloka_emulator, monkeypatch):
    """The emulator, wired up as the ``toloka_default`` connection through the environment."""
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", toloka_emulator.airflow_conn_json())
    return toloka_emulator


@pytest.fixture
def declare_rate(toloka_conn, monkeypatch):
    """Set the ``toloka_default`` connection's ``requests_per_second`` extra (the emulator as above)."""
    import json

    def declare(rate: object) -> None:
        conn = json.loads(toloka_conn.airflow_conn_json())
        conn["extra"]["requests_per_second"] = rate
        monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))

    return declare


@pytest.fixture
def hook(toloka_conn):
    """A hook against the emulator with millisecond back-off, so retry tests stay fast."""
    from airflow_provider_toloka.hooks.toloka import TolokaHook

    return TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05)


@pytest.fixture
def stopped_clock_emulator():
    """An emulator whose time moves only by ``advance_clock``: an operation runs, and a rate limit's second
    lasts, until the test says, however slow the machine is."""
    from airflow_provider_toloka.emulator.server import TolokaEmulator

    t0 = time.time()
    with TolokaEmulator(operation_duration=0.2, clock=lambda: t0) as emulator:
        yield emulator


@pytest.fixture
def stopped_clock_conn(stopped_clock_emulator, monkeypatch):
    """``stopped_clock_emulator`` wired up as the ``toloka_default`` connection."""
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", stopped_clock_emulator.airflow_conn_json())
    return stopped_clock_emulator
