"""Test-only DAG: archive a pool still in its rejection window, waiting in the triggerer until it ends.

``tests/deployment/rejection_window.py`` seeds ``toloka_archivable`` with a pool whose window ends about
a minute after the run starts. The first archive request is refused with ``THERE_IS_REJECTED_ASSIGNMENT``;
the task defers with a time trigger (no worker slot, no process) and asks again a minute later.
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
        archivable_timeout=3600,
        poll_interval=1,
        pool="toloka_archivable",  # its own, so the deployment test sees which slots it holds
        # Covers a loaded machine's Execution API time-out before the task starts; a try that already
        # waited and then failed starts a new wait, and archives at most once (archive is idempotent).
        retries=2,
        retry_delay=timedelta(seconds=5),
    )
