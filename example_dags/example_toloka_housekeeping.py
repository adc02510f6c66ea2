"""Keep a Toloka account tidy: every day, archive the projects that have been idle for a month.

Toloka archives idle pools on its own, never projects. The first task is a dry run: it lists the
account's active projects and logs what it would archive and why it skips the rest. The second
task does it: each project whose pools and trainings are all closed (or archived) and have not
moved for ``MIN_IDLE_DAYS`` is archived with its pools and trainings. Skipped projects (open pools,
recent activity, a pool in Toloka's 9-day rejection window) are only reported: tomorrow's run looks
again. Both summaries are in XCom and as a table in the task log; see docs/housekeeping.md.

Against the emulator (``./dev demo``) the seed has projects finished months ago (archived here), one
still collecting labels and one closed this week (both skipped).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

MIN_IDLE_DAYS = 30

with DAG(
    dag_id="example_toloka_housekeeping",
    description="Archive every Toloka project idle for 30 days, after a dry run that shows the plan",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # It archives across the whole account: it starts paused. Unpause it once the plan task's table
    # (trigger a run by hand) shows what you expect.
    is_paused_upon_creation=True,
    tags=["toloka", "example"],
    # A retry goes through the account again: archived projects are no longer listed, and a project
    # archived part-way continues. Set TOLOKA_POOL (an Airflow pool sized from Toloka's rate limit)
    # where the DAGs are parsed to bound Toloka traffic across all workers; see docs/deployment.md.
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=5),
        "pool": os.environ.get("TOLOKA_POOL", "default_pool"),
    },
) as dag:
    plan = TolokaHousekeepingOperator(task_id="plan", min_idle_days=MIN_IDLE_DAYS, dry_run=True)
    archive = TolokaHousekeepingOperator(
        task_id="archive_idle_projects", min_idle_days=MIN_IDLE_DAYS, max_concurrency=8, poll_interval=2
    )

    plan >> archive
