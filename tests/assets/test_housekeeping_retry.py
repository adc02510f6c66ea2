"""A housekeeping try that fails part-way loses no asset event: the retry records what it archived.

Run for real with ``dag.test()``: Airflow's task runner, its retry, its clearing of a task's XComs when a
new try starts, its ``task_state_store`` (3.3+) or Variables (3.0 to 3.2), and the ``asset_event`` rows
it writes when a try succeeds.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pendulum
import pytest

from airflow_provider_toloka.housekeeping import run as housekeeping_run


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def asset_events(dag_id: str) -> dict[str, int]:
    """uri -> how many events the DAG's tasks left for it, from the metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == dag_id)
        ).all()
    counts: dict[str, int] = {}
    for (uri,) in rows:
        counts[uri] = counts.get(uri, 0) + 1
    return counts


DAG_FILE = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    TolokaHousekeepingOperator(
        task_id="housekeeping",
        min_idle_days=30,
        poll_interval=0.1,
        max_concurrency=1,
        retries=1,
        retry_delay=timedelta(0),
    )
"""


def load_dag(tmp_path, monkeypatch, dag_id: str):
    """The DAG from a file of its own DAGs folder: ``dag.test()`` on 3.3 finds DAGs through their bundle."""
    import importlib.util

    from airflow import settings

    path = tmp_path / f"{dag_id}.py"
    path.write_text(DAG_FILE.format(dag_id=dag_id))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    if not hasattr(dag, "test"):  # Airflow 3.0's SDK DAG has no test()
        from airflow.models.dag import DAG

        dag = DAG.from_sdk_dag(dag)
    return dag


def test_a_retry_records_the_events_of_what_the_failed_try_archived(
    airflow_db, toloka_conn, monkeypatch, tmp_path
):
    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(toloka_conn.now))
    toloka_conn.operation_duration = 0.1
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", "1", status="CLOSED")
    toloka_conn.add_project("2")
    toloka_conn.add_pool("20", "2", status="CLOSED")
    toloka_conn.advance_clock(40 * 86400)
    toloka_conn.fail_next("pool", "20")  # project 2 fails on the first try only
    dag_id = f"housekeeping_retry_{datetime.now().strftime('%H%M%S%f')}"

    run = load_dag(tmp_path, monkeypatch, dag_id).test()

    assert run.state == "success"
    assert {toloka_conn.object("project", p)["status"] for p in ("1", "2")} == {"ARCHIVED"}
    host = toloka_conn.url.split("://", 1)[1]
    # Project 1 was archived by the first try, which failed: its events come from the retry.
    assert asset_events(dag_id) == {
        f"toloka://{host}/projects/1": 1,
        f"toloka://{host}/pools/10": 1,
        f"toloka://{host}/projects/2": 1,
        f"toloka://{host}/pools/20": 1,
    }


class TaskStateStore:
    """What the carry uses of Airflow's ``TaskStateStoreAccessor``; it outlives a try, like the real one."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def set(self, key: str, value: object, **_: object) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def test_a_try_stopped_part_way_keeps_what_it_archived_for_the_next(toloka_conn, monkeypatch):
    """Stopped between projects (an execution_timeout, say), the try still leaves what it archived."""
    from airflow.sdk import AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from task_instance_stub import RecordingTI

    from airflow_provider_toloka.assets import TOLOKA_ARCHIVE_ALIAS
    from airflow_provider_toloka.hooks.toloka import TolokaHook
    from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(toloka_conn.now))
    toloka_conn.operation_duration = 0.1
    for project_id in ("1", "2"):
        toloka_conn.add_project(project_id)
        toloka_conn.add_pool(f"{project_id}0", project_id, status="CLOSED")
    toloka_conn.advance_clock(40 * 86400)
    list_pools = TolokaHook.list_pools

    def stopped_at_project_2(hook, project_id, *args, **kwargs):
        if str(project_id) == "2":
            raise KeyboardInterrupt  # a BaseException, as Airflow's timeout is to the run
        return list_pools(hook, project_id, *args, **kwargs)

    store = TaskStateStore()

    def attempt() -> set[str]:
        events = OutletEventAccessors()
        operator = TolokaHousekeepingOperator(
            task_id="h", min_idle_days=30, poll_interval=0.1, max_concurrency=1
        )
        operator.execute({"ti": RecordingTI(), "outlet_events": events, "task_state_store": store})
        return {
            e.dest_asset_key.uri.split("/", 3)[3]
            for e in events[AssetAlias(TOLOKA_ARCHIVE_ALIAS)].asset_alias_events
        }

    monkeypatch.setattr(TolokaHook, "list_pools", stopped_at_project_2)
    with pytest.raises(KeyboardInterrupt):
        attempt()
    assert toloka_conn.object("project", "1")["status"] == "ARCHIVED"
    monkeypatch.setattr(TolokaHook, "list_pools", list_pools)

    assert attempt() == {"projects/1", "pools/10", "projects/2", "pools/20"}
    assert store.values == {}, "recorded, then forgotten"
