"""A private Redis for the shared budget (Debian's ``redis-server``, as the production test uses it)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest

from tests.deployment.services import Redis, missing_services

PASSWORD = "budget-s3cret-pw"


@pytest.fixture
def redis_store(tmp_path) -> Iterator[Redis]:
    """A Redis that asks for ``PASSWORD``; killed and started again by the tests that need it."""
    if "redis-server" in missing_services():
        message = "needs the Debian package redis-server (.ci/run installs it)"
        if os.environ.get("TOLOKA_REQUIRE_PRODUCTION_TEST"):
            pytest.fail(message)
        pytest.skip(message)
    store = Redis(tmp_path / "redis", password=PASSWORD)
    store.start()
    yield store
    store.stop()


@pytest.fixture
def share_budget(toloka_conn, monkeypatch) -> Callable[..., str]:
    """Set ``toloka_default``'s extras (``requests_per_second``, ``rate_limit_storage_uri``); its JSON."""

    def share(**extra: object) -> str:
        conn = json.loads(toloka_conn.airflow_conn_json())
        conn["extra"].update(extra)
        value = json.dumps(conn)
        monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", value)
        return value

    return share
