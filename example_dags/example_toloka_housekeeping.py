"""Keep a Toloka account tidy: every day, archive the projects that have been idle for a month.

Toloka archives idle pools on its own, never projects. The first task is a dry run: it lists the
account's active projects and logs what it would archive and why it skips the rest. The second
task does it: each project whose pools and trainings are all closed (or archived) and have not
moved for ``MIN_IDLE_DAYS`` is archived with its pools and trainings. Skipped projects (open pools,
recent activity, a pool in Toloka's 9-day rejection window) are only reported: tomorrow's run looks
again. Both summaries are in XCom and as a table in the task log; see docs/housekeeping.md.

On Airflow 3.1+ a person approves the plan in between: Airflow's own ``ApprovalOperator`` (standard
provider, human-in-the-loop) shows the dry run's table under "Required actions" in the UI, and the
real run archives exactly the approved projects (``project_ids``), at most ``MAX_PROJECTS`` of them.
Each is assessed again first: a project that changed since the dry run (opened, new activity) is
skipped and reported with its reason. "Reject", or no answer within a day, skips the real run.

Airflow 3.0 has no approval operator: there the two tasks run back to back, as the DAG starts
paused and is triggered by hand. To keep a person in the loop on 3.0, run a ``dry_run=True`` DAG on
the schedule and a second DAG, triggered by hand with the ids to archive in its ``params``, whose
task has ``project_ids="{{ params.project_ids }}"``; or upgrade to 3.1.

Every object archived records an event of its ``toloka://`` asset (see docs/assets.md).

Against the emulator (``./dev demo``) the seed has projects finished months ago (archived here), one
still collecting labels and one closed this week (both skipped).
"""

from __future__ import annotations

# [START housekeeping_recipe]
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_toloka.compat import approval_operator
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

# Airflow 3.1+: the standard provider's ApprovalOperator; None on 3.0 (see the docstring for what to use).
ApprovalOperator = approval_operator()

MIN_IDLE_DAYS = 30
MAX_PROJECTS = 500
# The dry run's table, as the approver sees it in the UI (Markdown).
APPROVAL_BODY = (
    "{% set plan = ti.xcom_pull(task_ids='plan') %}"
    "The dry run (task `plan`) checked {{ plan['counts']['checked'] }} active project(s) at "
    "{{ plan['checked_at'] }}. Approve to archive the projects marked *archive*, with their pools and "
    "trainings; each is checked again first.\n\n"
    "| project | outcome | detail |\n|---|---|---|\n"
    "{% for id in plan['archived'] %}| {{ id }} | archive | |\n{% endfor %}"
    "{% for reason, ids in plan['skipped'].items() %}{% for id, why in ids.items() %}"
    "| {{ id }} | skip: {{ reason }} | {{ why }} |\n{% endfor %}{% endfor %}"
)

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
        task_id="archive_idle_projects",
        min_idle_days=MIN_IDLE_DAYS,
        max_concurrency=8,
        poll_interval=2,
        # Exactly the projects of the dry run a person approved; each is assessed again before archiving.
        project_ids="{{ ti.xcom_pull(task_ids='plan')['archived'] }}",
        max_projects=MAX_PROJECTS,
    )

    if ApprovalOperator is not None:
        approve = ApprovalOperator(
            task_id="approve",
            subject="Archive the idle Toloka projects of the dry run?",
            body=APPROVAL_BODY,
            # No answer in a day counts as "Reject": the real run is skipped, tomorrow's plan asks again.
            defaults="Reject",
            response_timeout=timedelta(days=1),
            retries=0,
        )
        plan >> approve >> archive
    else:
        plan >> archive
# [END housekeeping_recipe]
