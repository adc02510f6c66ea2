"""Archive a whole Toloka project in one task: close what is open, archive pools, trainings, project.

A dry-run task logs the plan first; the cascade task then carries it out. The project id comes
from a DAG param, so the same file runs against the local emulator (``./dev demo``, whose seed
has project 1003 with closed pools, one open pool and a training) and against real Toloka.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

with DAG(
    dag_id="example_toloka_cascade",
    description="Archive a Toloka project with all its pools and trainings",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["toloka", "example"],
    params={"project_id": Param("1003", type="string", description="Project to archive")},
    # A retry continues where a failure stopped: archived objects are skipped.
    # Set TOLOKA_POOL (e.g. "toloka", an Airflow pool sized from Toloka's rate limit) where the DAGs are
    # parsed to bound Toloka traffic across all workers; see docs/deployment.md.
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:
    plan = TolokaArchiveProjectOperator(
        task_id="plan",
        project_id="{{ params.project_id }}",
        cascade=True,
        close_open=True,
        dry_run=True,
    )
    # [START cascade]
    archive = TolokaArchiveProjectOperator(
        task_id="archive_project_cascade",
        project_id="{{ params.project_id }}",
        cascade=True,  # pools and trainings (each training once its pools are done), then the project
        close_open=True,  # close OPEN pools/trainings first instead of refusing
        dry_run=False,  # True: log and return the plan, send no close or archive request
        max_concurrency=128,  # operations in flight at once (1-300)
        timeout=3600,  # seconds for the whole cascade (default: no limit)
        poll_interval=2,  # longest pause between two reads of a running operation (s)
    )
    # [END cascade]

    plan >> archive
