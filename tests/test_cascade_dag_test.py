"""A deferrable cascade end to end under ``dag.test()``: the task defers, Airflow runs the trigger (inline,
as ``dag.test()`` does), and the task resumes with its event, against the emulator over real HTTP."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "example_dags" / "example_toloka_cascade.py"


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def test_the_cascade_example_deferred_runs_in_the_trigger(airflow_db, toloka_conn, monkeypatch):
    from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger

    toloka_conn.operation_duration = 0.5
    toloka_conn.load_seed("demo")
    fired = []
    run_trigger = TolokaCascadeTrigger.run

    async def recording_run(trigger):
        async for event in run_trigger(trigger):
            fired.append((trigger.project_id, trigger.dry_run, event.payload["status"]))
            yield event

    monkeypatch.setattr(TolokaCascadeTrigger, "run", recording_run)
    spec = importlib.util.spec_from_file_location("example_toloka_cascade", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    if not hasattr(dag, "test"):  # Airflow 3.0's SDK DAG (see tests/test_example_dags.py)
        from airflow.models.dag import DAG

        dag = DAG.from_sdk_dag(dag)
    for task in dag.tasks:
        task.deferrable = True  # what [operators] default_deferrable = True gives both tasks
        task.poll_interval = 0.5

    run = dag.test()

    assert run.state == "success"
    assert fired == [("1003", True, "success"), ("1003", False, "success")]
    for kind, object_id in [("pool", "2201"), ("pool", "2204"), ("training", "3201"), ("project", "1003")]:
        assert toloka_conn.object(kind, object_id)["status"] == "ARCHIVED"
    assert [op["parameters"]["pool_id"] for op in toloka_conn.operations(type="POOL.CLOSE")] == ["2204"]
