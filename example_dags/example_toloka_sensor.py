"""Start an archive without waiting, then follow its operation with ``TolokaOperationSensor``.

Useful when the archive is one step of a longer pipeline: the operator frees its slot as soon as
Toloka accepts the request, and the sensor (here in ``reschedule`` mode) checks back later.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

with DAG(
    dag_id="example_toloka_sensor",
    description="Archive a pool without waiting, then wait for the operation with a sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["toloka", "example"],
    params={"pool_id": Param("2401", type="string", description="A closed pool to archive")},
    # Set TOLOKA_POOL (e.g. "toloka", an Airflow pool sized from Toloka's rate limit) where the DAGs are
    # parsed to bound Toloka traffic across all workers; see docs/deployment.md.
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:
    # [START sensor_after_archive]
    archive = TolokaArchivePoolOperator(
        task_id="archive_pool", pool_id="{{ params.pool_id }}", wait_for_completion=False
    )
    wait = TolokaOperationSensor(
        task_id="wait_for_archive",
        operation_id="{{ ti.xcom_pull(task_ids='archive_pool', key='operation_id') }}",
        poke_interval=2,
        timeout=600,
        mode="reschedule",
    )
    archive >> wait
    # [END sensor_after_archive]
