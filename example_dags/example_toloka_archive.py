"""Archive a Toloka project the way the API requires: its pools first, then the training, then the project.

The ids come from DAG params, so the same file runs against the local emulator (``./dev demo``,
whose seed uses these defaults) and against real Toloka (trigger with your own ids).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)

with DAG(
    dag_id="example_toloka_archive",
    description="Archive a Toloka project: pools, then the training linked to them, then the project",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["toloka", "example"],
    params={
        "project_id": Param("1001", type="string", description="Project to archive"),
        "pool_ids": Param(["2001", "2002"], type="array", description="Every pool of the project"),
        "training_id": Param("3001", type="string", description="Training linked to those pools"),
    },
    # A retried task never starts a second archive: it finds the running one and waits on it.
    # Set TOLOKA_POOL (e.g. "toloka", an Airflow pool sized from Toloka's rate limit) where the DAGs are
    # parsed to bound Toloka traffic across all workers; see docs/deployment.md.
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:

    @task
    def pool_ids(params: dict | None = None) -> list[str]:
        return [str(pool_id) for pool_id in (params or {})["pool_ids"]]

    archive_pools = TolokaArchivePoolOperator.partial(task_id="archive_pool", poll_interval=2).expand(
        pool_id=pool_ids()
    )
    archive_training = TolokaArchiveTrainingOperator(
        task_id="archive_training", training_id="{{ params.training_id }}", poll_interval=2
    )
    archive_project = TolokaArchiveProjectOperator(
        task_id="archive_project", project_id="{{ params.project_id }}", poll_interval=2
    )

    archive_pools >> archive_training >> archive_project
