"""Archive a Toloka project in deferrable mode: no worker slot is held while Toloka archives.

The requests are sent from the worker; each wait runs in the triggerer as ``TolokaOperationTrigger``
(start one with ``airflow triggerer``). The pool is archived without waiting and followed by a
deferrable sensor, the training and the project wait in their own operators. The ids come from DAG
params; the defaults match project 1002 of the emulator's demo seed (``./dev demo``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

with DAG(
    dag_id="example_toloka_deferrable",
    description="Archive a pool, its training and their project, waiting in the triggerer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["toloka", "example"],
    params={
        "project_id": Param("1002", type="string", description="Project to archive"),
        "pool_id": Param("2101", type="string", description="The project's only pool (closed)"),
        "training_id": Param("3101", type="string", description="Training linked to that pool"),
    },
    # A retry also covers an Airflow race that can fail a resumed deferred task (docs/deployment.md);
    # it starts no second archive. TOLOKA_POOL names a pool that bounds Toloka traffic (same doc).
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:
    archive_pool = TolokaArchivePoolOperator(
        task_id="archive_pool", pool_id="{{ params.pool_id }}", wait_for_completion=False
    )
    # Already archived (a 204) means no operation: the sensor then succeeds at once without deferring.
    wait_for_pool = TolokaOperationSensor(
        task_id="wait_for_pool",
        operation_id="{{ ti.xcom_pull(task_ids='archive_pool', key='operation_id') }}",
        poke_interval=2,
        timeout=600,
        deferrable=True,
    )
    archive_training = TolokaArchiveTrainingOperator(
        task_id="archive_training",
        training_id="{{ params.training_id }}",
        poll_interval=2,
        timeout=600,
        deferrable=True,
    )
    archive_project = TolokaArchiveProjectOperator(
        task_id="archive_project",
        project_id="{{ params.project_id }}",
        poll_interval=2,
        timeout=600,
        deferrable=True,
    )

    archive_pool >> wait_for_pool >> archive_training >> archive_project
