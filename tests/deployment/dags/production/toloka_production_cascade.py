"""Test-only DAG of the production-shaped deployment test (``tests/deployment/test_production.py``).

A whole project archived by one deferrable cascade, carried out in a triggerer, against an emulator of
its own (``toloka_cascade``). At most ``MAX_CONCURRENCY`` operations are in flight, and they end only when
the test advances that emulator's clock: so the cascade is mid-way (a few pools archiving, the rest not
sent) when the test SIGKILLs the triggerer running it, however slow the machine, and the other
triggerer has to take it over and finish it.

One retry, against Airflow's race that fails a resumed deferred task (docs/deployment.md,
Troubleshooting): a retry lists again and starts no second operation.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

PROJECT = "400"
MAX_CONCURRENCY = 4

with DAG(
    dag_id="toloka_production_cascade",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:
    TolokaArchiveProjectOperator(
        task_id="archive_project_cascade",
        project_id=PROJECT,
        toloka_conn_id="toloka_cascade",
        cascade=True,
        deferrable=True,
        max_concurrency=MAX_CONCURRENCY,
        poll_interval=2,
    )
