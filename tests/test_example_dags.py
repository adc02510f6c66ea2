"""The example DAGs run end to end with ``dag.test()`` against the emulator, seeded like the demo."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "example_dags"


@pytest.fixture(scope="session")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def load_dag(name: str):
    """The example's DAG, ready for ``.test()``."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    # Airflow 3.0's SDK DAG has no test(); `airflow dags test` there converts it to the scheduler's DAG.
    if not hasattr(dag, "test"):
        from airflow.models.dag import DAG

        dag = DAG.from_sdk_dag(dag)
    return dag


def test_examples_import_without_errors():
    from airflow_provider_toloka.compat import dag_bag

    bag = dag_bag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert len(bag.dags) >= 2


@pytest.fixture
def demo(toloka_conn):
    toloka_conn.operation_duration = 0.5
    toloka_conn.load_seed("demo")
    return toloka_conn


def test_archive_example_archives_pools_training_and_project(airflow_db, demo):
    run = load_dag("example_toloka_archive").test()
    assert run.state == "success"
    for kind, object_id in [("pool", "2001"), ("pool", "2002"), ("training", "3001"), ("project", "1001")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"


def test_sensor_example_waits_for_the_operation(airflow_db, demo):
    run = load_dag("example_toloka_sensor").test()
    assert run.state == "success"
    assert demo.object("pool", "2401")["status"] == "ARCHIVED"
    assert len(demo.operations(type="POOL.ARCHIVE")) == 1


def test_cascade_example_closes_and_archives_the_whole_project(airflow_db, demo):
    run = load_dag("example_toloka_cascade").test()
    assert run.state == "success"
    for kind, object_id in [("pool", "2201"), ("pool", "2204"), ("training", "3201"), ("project", "1003")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"
    assert [op["parameters"]["pool_id"] for op in demo.operations(type="POOL.CLOSE")] == ["2204"]


def test_deferrable_example_waits_in_the_trigger(airflow_db, demo, monkeypatch):
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    waited_on = []
    run_trigger = TolokaOperationTrigger.run

    async def recording_run(trigger):
        waited_on.append(trigger.operation_id)
        async for event in run_trigger(trigger):
            yield event

    monkeypatch.setattr(TolokaOperationTrigger, "run", recording_run)
    run = load_dag("example_toloka_deferrable").test()
    assert run.state == "success"
    for kind, object_id in [("pool", "2101"), ("training", "3101"), ("project", "1002")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"
    # dag.test() runs each trigger inline. Both waiting operators defer on the operation Toloka just
    # accepted; the sensor defers only if the pool's archive is still running when it first looks,
    # which a busy machine may not reach within the operation's half second.
    operations = {op["id"]: op["type"] for op in demo.operations()}
    assert set(waited_on) <= set(operations)
    assert {operations[op_id] for op_id in waited_on} >= {"TRAINING.ARCHIVE", "PROJECT.ARCHIVE"}
