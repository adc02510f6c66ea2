"""Run when a Toloka project is archived: a DAG scheduled on the project's ``toloka://`` asset.

Every archive task of this provider (the three operators, the cascade, housekeeping) records an event
of each object it archived, through the ``toloka_archive`` asset alias it adds to its own outlets, so
the archiving DAG needs no ``outlets``. This DAG runs after any task anywhere archives project
``TOLOKA_PROJECT_ID``, and reports what the event says (kind, id, operation id, environment, when).

The URI is built from the connection (``toloka_asset_uri``), never spelt by hand:
``toloka://toloka.dev/projects/1003`` in production, the emulator's host:port under ``./dev demo``.
So the ``toloka_default`` connection must exist where the DAG is parsed: without it this file fails to
import, naming the connection, rather than guess a host and wait on an asset nothing ever updates. To
depend on no connection, build the URI from the API URL you know:
``uri_for("https://toloka.dev", "project", 1003)`` (``airflow_provider_toloka.assets``).
To react to every archive instead, schedule on ``AssetAlias("toloka_archive")``. See docs/assets.md.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_provider_toloka.assets import toloka_asset_uri

PROJECT_ID = os.environ.get("TOLOKA_PROJECT_ID", "1003")
# Reads the connection (not its token) at parse time, to know the API host; raises if it is missing.
PROJECT = Asset(toloka_asset_uri("project", PROJECT_ID))

with DAG(
    dag_id="example_toloka_asset",
    description="Report when a Toloka project is archived (scheduled on its toloka:// asset)",
    schedule=[PROJECT],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["toloka", "example"],
    default_args={"pool": os.environ.get("TOLOKA_POOL", "default_pool")},
) as dag:

    @task
    def report_archive(*, triggering_asset_events=None) -> list[dict]:
        """One line per archive event that started this run; a real DAG would notify or clean up here."""
        seen = []
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                print(f"{asset.uri} archived: {event.extra}")
                seen.append(dict(event.extra))
        return seen

    report_archive()
