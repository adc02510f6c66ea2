"""Test-only DAG: a whole project archived by a deferrable cascade, carried out by the triggerer.

The worker checks the arguments and defers to ``TolokaCascadeTrigger``; the triggerer lists the project,
archives its pools, then the training linked to them, then the project, and the task resumes in a worker
only to record the outcome (``tests/deployment/test_deployment.py`` checks each part).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

with DAG(
    dag_id="toloka_cascade_deferrable",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"project_id": Param("60", type="string")},
) as dag:
    TolokaArchiveProjectOperator(
        task_id="archive_project_cascade",
        project_id="{{ params.project_id }}",
        cascade=True,
        deferrable=True,
        poll_interval=1,
        pool=os.environ.get("TOLOKA_POOL", "default_pool"),
        # Against Airflow's race that fails a resumed deferred task (docs/deployment.md, Troubleshooting):
        # the retry lists again, finds everything archived, and starts no second operation.
        retries=1,
        retry_delay=timedelta(seconds=5),
    )
