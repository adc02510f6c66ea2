"""Test-only DAG: the first try dies while waiting for the archive, the retry waits on that same archive.

It talks to ``toloka_slow``, an emulator whose operations outlast ``execution_timeout``, so the first
try is killed by Airflow mid-wait. The retry's POST meets Toloka's ``409 OPERATION_ALREADY_EXISTS``,
which the hook turns into the running operation: no second archive is started. The retry gets a longer
``execution_timeout`` (Airflow reads it after ``on_execute_callback``), so it can wait the archive out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Context, Param

from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator


def give_the_retry_time(context: Context) -> None:
    # The task the try runs is ti.task: on Airflow 3.0, context["task"] is the copy made before
    # prepare_for_execution(), whose execution_timeout the runner never reads (3.1+ make them one).
    if context["ti"].try_number > 1:
        context["ti"].task.execution_timeout = timedelta(minutes=5)


with DAG(
    dag_id="toloka_resume_after_timeout",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"pool_id": Param("41", type="string")},
) as dag:
    TolokaArchivePoolOperator(
        task_id="archive_pool",
        pool_id="{{ params.pool_id }}",
        toloka_conn_id="toloka_slow",
        poll_interval=1,
        execution_timeout=timedelta(seconds=6),
        retries=1,
        retry_delay=timedelta(seconds=0),
        on_execute_callback=give_the_retry_time,
    )
