"""Test set-up shared by every test: a throw-away AIRFLOW_HOME and the Toloka emulator fixture."""

from __future__ import annotations

import os
import tempfile

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


REDIS_PASSWORD = "budget-s3cret-pw"


@pytest.fixture
def redis_store(tmp_path):
    """A private Redis asking for ``REDIS_PASSWORD`` (Debian's ``redis-server``, as tests/deployment runs it).

    For the shared request budget; tests kill it and start it again on the same port.
    """
    from tests.deployment.services import Redis, missing_services

    if "redis-server" in missing_services():
        message = "needs the Debian package redis-server (.ci/run installs it)"
        if os.environ.get("TOLOKA_REQUIRE_PRODUCTION_TEST"):
            pytest.fail(message)
        pytest.skip(message)
    store = Redis(tmp_path / "redis", password=REDIS_PASSWORD)
    store.start()
    yield store
    store.stop()
