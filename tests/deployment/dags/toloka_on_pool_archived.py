"""Test-only DAG, scheduled on pool 11's ``toloka://`` asset: the scheduler starts it after the archive.

``example_toloka_archive`` archives pool 11 on ``toloka_default`` with no ``outlets`` of its own; the
operator's ``toloka_archive`` alias turns that into an event of this asset. The URI comes from the
connection at parse time (``toloka_asset_uri``): the emulator's host:port, as in production
``toloka.dev``. Airflow 3.0.0's dag-processor cannot read a connection stored in the metadata DB
(``CONNECTION_NOT_FOUND``): there the URI is built from the API URL the test stack exports
(``TOLOKA_DEFAULT_API_URL``) with ``uri_for``, as a 3.0 user would from a known host.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_provider_toloka.assets import toloka_asset_uri, uri_for

try:
    POOL = Asset(toloka_asset_uri("pool", "11"))
except Exception:  # Airflow 3.0.0: no DB connections at parse time
    POOL = Asset(uri_for(os.environ["TOLOKA_DEFAULT_API_URL"], "pool", "11"))

with DAG(
    dag_id="toloka_on_pool_archived",
    schedule=[POOL],
    start_date=datetime(2026, 1, 1),
    catchup=False,
) as dag:

    @task
    def report(*, triggering_asset_events=None) -> list[dict]:
        return [dict(event.extra) for events in (triggering_asset_events or {}).values() for event in events]

    report()
