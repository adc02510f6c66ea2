"""Test-only DAG: archive a pool in its rejection window, waiting in the triggerer until the window passes.

``tests/deployment/rejection_window.py`` seeds ``toloka_archivable`` with the pool's last rejection at
start-up, and moves the window past once it sees this task deferred. The emulator's refusal names the end
of the window, 9 days away; ``archivable_timeout`` brings the second (and last) check to 2 minutes after
the first refusal instead, or 1 minute (``archivable_check_interval``) if the refusal names no date.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator

with DAG(
    dag_id="toloka_wait_until_archivable",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"pool_id": Param("51", type="string")},
) as dag:
    TolokaArchivePoolOperator(
        task_id="archive_pool",
        pool_id="{{ params.pool_id }}",
        toloka_conn_id="toloka_archivable",
        wait_until_archivable=True,
        archivable_check_interval=60,  # the shortest allowed
        archivable_timeout=120,
        poll_interval=1,
        pool="toloka_archivable",  # its own, so the deployment test sees which slots it holds
        # Covers a loaded machine's Execution API time-out before the task starts; a try that already
        # waited and then failed starts a new wait, and archives at most once (archive is idempotent).
        retries=2,
        retry_delay=timedelta(seconds=5),
    )
