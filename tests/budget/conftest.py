"""``toloka_default`` with a shared budget (its Redis: ``redis_store`` in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest


@pytest.fixture
def share_budget(toloka_conn, monkeypatch) -> Callable[..., str]:
    """Set ``toloka_default``'s extras (``requests_per_second``, ``redis_store.budget_extra()``); its JSON."""

    def share(**extra: object) -> str:
        conn = json.loads(toloka_conn.airflow_conn_json())
        conn["extra"].update(extra)
        value = json.dumps(conn)
        monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", value)
        return value

    return share
