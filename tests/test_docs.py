"""The docs' code is tested code: every Python block of 4+ lines is a region that a test runs.

The regions live in the example DAGs (run end to end by tests/test_example_dags.py) or below, each in the
test that runs it.
"""

from __future__ import annotations

import pytest
from doc_regions import blocks, doc_files, region

from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator

DOC_BLOCKS = [block for doc in doc_files() for block in blocks(doc)]


def test_the_docs_blocks_are_found():
    # Not vacuous: README.md and docs/ have code a reader copies.
    assert len(DOC_BLOCKS) >= 8
    assert {block.doc.name for block in DOC_BLOCKS} >= {"README.md", "cascade.md", "housekeeping.md"}


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=str)
def test_every_long_python_block_is_a_tested_region(block):
    assert block.source, (
        f"{block}: a Python block of 4+ lines must be tested code: put it between '# [START name]' and "
        f"'# [END name]' in an example DAG or a test that runs it, and '<!-- code: <file>#name -->' on the "
        "line before the block"
    )
    assert block.text == region(block.source), (
        f"{block} differs from {block.source}: run `python tests/doc_regions.py --write`"
    )


def readme_guide():
    from airflow.sdk import DAG

    with DAG("readme_guide", schedule=None, params={"project_id": "1001"}) as dag:
        # [START readme_guide]
        from airflow_provider_toloka.operators.archive import (
            TolokaArchivePoolOperator,
            TolokaArchiveProjectOperator,
            TolokaArchiveTrainingOperator,
        )
        from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
        from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

        # Toloka's order: closed pools first, then the training linked to them, then the project.
        pools = TolokaArchivePoolOperator.partial(task_id="archive_pool").expand(pool_id=["2001", "2002"])
        training = TolokaArchiveTrainingOperator(task_id="archive_training", training_id="3001")
        project = TolokaArchiveProjectOperator(
            task_id="archive_project", project_id="{{ params.project_id }}"
        )
        pools >> training >> project

        # Or the whole project in one task: pools and trainings (each training once its own pools are done),
        # then the project, closing what is open.
        TolokaArchiveProjectOperator(task_id="archive_all", project_id="1003", cascade=True, close_open=True)

        # Or, scheduled daily, every project of the account idle for 30 days (dry_run=True to preview).
        TolokaHousekeepingOperator(task_id="housekeeping", min_idle_days=30)

        # Start without waiting, then wait with a sensor (poke or reschedule mode).
        start = TolokaArchivePoolOperator(task_id="start", pool_id="2401", wait_for_completion=False)
        wait = TolokaOperationSensor(
            task_id="wait",
            operation_id="{{ ti.xcom_pull(task_ids='start', key='operation_id') }}",
            mode="reschedule",
        )
        # [END readme_guide]
        start >> wait
    return dag


def test_readme_guide_builds_the_dag_it_describes():
    # dag.test() runs only DAGs of the DAG folder; each of these operators runs for real in an example DAG.
    dag = readme_guide()
    assert dag.get_task("archive_project").upstream_task_ids == {"archive_training"}
    assert dag.get_task("archive_training").upstream_task_ids == {"archive_pool"}
    assert dag.get_task("archive_pool").expand_input.value == {"pool_id": ["2001", "2002"]}
    cascade = dag.get_task("archive_all")
    assert (cascade.project_id, cascade.cascade, cascade.close_open) == ("1003", True, True)
    assert dag.get_task("housekeeping").min_idle_days == 30
    assert dag.get_task("start").wait_for_completion is False
    assert dag.get_task("wait").mode == "reschedule"
    assert dag.get_task("wait").upstream_task_ids == {"start"}


def test_the_housekeeping_page_builds_the_operator_it_describes():
    # [START housekeeping_parameters]
    from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

    housekeeping = TolokaHousekeepingOperator(
        task_id="archive_idle_projects",
        min_idle_days=30,  # nothing in the project moved for 30 days
        close_open=False,  # True: close open pools of idle projects instead of skipping them
        dry_run=False,  # True: change nothing, return the same report
        max_concurrency=8,  # projects handled at once (1-64)
        poll_interval=10,  # longest pause between polls of running archives (s)
        toloka_conn_id="toloka_default",
    )
    # [END housekeeping_parameters]
    assert (housekeeping.min_idle_days, housekeeping.close_open, housekeeping.plan_only) == (30, False, False)
    assert (housekeeping.max_concurrency, housekeeping.poll_interval) == (8, 10)


def test_a_big_mapped_archive_keeps_to_its_share_of_the_pool():
    from airflow.sdk import DAG

    pool_ids = ["2001", "2002"]
    with DAG("mapped_archive_in_a_pool", schedule=None) as dag:
        # [START mapped_archive_in_a_pool]
        archive_pools = TolokaArchivePoolOperator.partial(
            task_id="archive_pool", pool="toloka", max_active_tis_per_dagrun=16
        )
        archive_pools.expand(pool_id=pool_ids)
        # [END mapped_archive_in_a_pool]
    task = dag.get_task("archive_pool")
    assert (task.pool, task.max_active_tis_per_dagrun) == ("toloka", 16)


def test_the_emulator_recipe_archives_its_pool(monkeypatch):
    # Whatever the recipe sets is undone after the test.
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", "")
    # [START emulator_in_tests]
    import os

    from airflow_provider_toloka.emulator import TolokaEmulator
    from airflow_provider_toloka.hooks.toloka import TolokaHook

    with TolokaEmulator(operation_duration=0.2) as emu:  # port 0: any free port
        emu.add_project("1")
        emu.add_pool("10", project_id="1", status="CLOSED")
        emu.add_training("20", project_id="1", linked_pool_ids=["10"])
        os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = emu.airflow_conn_json()
        # Run your DAG here with dag.test(), or call the hook directly:
        hook = TolokaHook()
        hook.wait_for_operation(hook.archive_pool("10")["id"], poll_interval=0.2)
        assert emu.object("pool", "10")["status"] == "ARCHIVED"
    # [END emulator_in_tests]


def test_the_hook_page_task_archives_a_closed_pool(demo):
    # [START hook_in_a_task]
    from airflow.sdk import task

    from airflow_provider_toloka.hooks.toloka import TolokaHook

    @task
    def archive_if_closed(pool_id: str) -> None:
        hook = TolokaHook()  # the connection is read at the first request, not here
        if hook.get_pool(pool_id)["status"] == "CLOSED":
            hook.wait_for_operation(hook.archive_pool(pool_id)["id"])

    # [END hook_in_a_task]
    archive_if_closed.function("2001")
    archive_if_closed.function("2204")  # open: left alone
    assert demo.object("pool", "2001")["status"] == "ARCHIVED"
    assert demo.object("pool", "2204")["status"] == "OPEN"
