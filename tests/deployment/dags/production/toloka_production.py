"""Test-only DAG of the production-shaped deployment test (``tests/deployment/test_production.py``).

Two dozen pool archives through ``.expand``, half waiting in a Celery worker and half deferred to the
triggerers, then the training that uses every pool, then the project. The faults strike while they wait.

Every task has one retry, for one reason: a try whose worker is SIGKILLed cannot finish, and Airflow
retries it once the task heartbeat timeout has passed. Nothing else may cost a retry (the test checks):
the waits ride out the Toloka outage, deferred waits move to the surviving triggerer, and the tasks
talk to a restarted api-server again.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)

PROJECT = "100"
WORKER_POOLS = [str(101 + i) for i in range(12)]
DEFERRED_POOLS = [str(201 + i) for i in range(12)]
TRAINING = "301"
POLL_INTERVAL = 5

with DAG(
    dag_id="toloka_production",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=64,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:
    in_worker = TolokaArchivePoolOperator.partial(
        task_id="archive_pool", poll_interval=POLL_INTERVAL, deferrable=False
    ).expand(pool_id=WORKER_POOLS)
    deferred = TolokaArchivePoolOperator.partial(
        task_id="archive_pool_deferred", poll_interval=POLL_INTERVAL, deferrable=True
    ).expand(pool_id=DEFERRED_POOLS)
    training = TolokaArchiveTrainingOperator(
        task_id="archive_training", training_id=TRAINING, poll_interval=POLL_INTERVAL
    )
    project = TolokaArchiveProjectOperator(
        task_id="archive_project", project_id=PROJECT, poll_interval=POLL_INTERVAL, deferrable=True
    )
    [in_worker, deferred] >> training >> project
