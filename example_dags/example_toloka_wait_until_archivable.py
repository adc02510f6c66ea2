"""Archive a pool as soon as Toloka allows it: wait out its 9-day rejection window, then archive the project.

A pool whose assignments were rejected cannot be archived for 9 days after the last rejection; Toloka answers
``409 THERE_IS_REJECTED_ASSIGNMENT``. With ``wait_until_archivable=True`` the task does not fail: it defers
with a time trigger (no worker slot; a triggerer must run) and asks again every
``archivable_check_interval`` seconds, for up to ``archivable_timeout`` seconds from the first refusal. An
open pool, a 403 or a 404 still fails at once. The ids come from DAG params; the defaults match project
1005 of the emulator's demo seed (``./dev demo``), whose pool is already past its window.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator, TolokaArchiveProjectOperator

with DAG(
    dag_id="example_toloka_wait_until_archivable",
    description="Archive a pool once its rejection window has passed, then its project",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["toloka", "example"],
    params={
        "project_id": Param("1005", type="string", description="Project to archive"),
        "pool_id": Param("2501", type="string", description="The project's pool (closed)"),
    },
    # TOLOKA_POOL names a pool that bounds Toloka traffic (docs/deployment.md).
    default_args={"pool": os.environ.get("TOLOKA_POOL", "default_pool")},
) as dag:
    # [START wait_until_archivable]
    archive_pool = TolokaArchivePoolOperator(
        task_id="archive_pool",
        pool_id="{{ params.pool_id }}",
        wait_until_archivable=True,  # default False: the refusal fails the task, as before
        archivable_check_interval=timedelta(hours=6).total_seconds(),  # between checks (default 21600, >= 60)
        archivable_timeout=timedelta(days=10).total_seconds(),  # from the first refusal (default 864000)
        poll_interval=2,
    )
    # [END wait_until_archivable]
    archive_project = TolokaArchiveProjectOperator(
        task_id="archive_project", project_id="{{ params.project_id }}", poll_interval=2
    )

    archive_pool >> archive_project
