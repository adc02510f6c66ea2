"""``wait_until_archivable`` in a real deployment: a task waits out a rejection window in the triggerer.

The pool's window ends under a minute after the DAG run starts. The first archive request is refused; the task
defers with ``DateTimeTrigger`` (state ``deferred``, no worker process, no slot of its Airflow pool), asks
again a minute later and archives the pool with one operation, in its first and only try.

A deployment of its own: the pool's rejection date depends on when the run starts, so its emulator is
seeded once the deployment is up. Run alone with ``./dev test tests/deployment/test_archivable.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import TEST_DAGS, TOLOKA_POOL, AirflowStack, Emulator, wait_until

pytestmark = pytest.mark.deployment

CONN_ID = "toloka_archivable"
DAG_ID = "toloka_wait_until_archivable"
# Seconds of rejection window left when the run is triggered: the first check falls inside it however slowly
# the task starts, and the second (60 s after the first, the shortest archivable_check_interval) after it.
WINDOW_LEFT = 50.0
RUN_DEADLINE = 300.0
PROJECT = {"id": "50", "public_name": "Deployment: wait until archivable"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowStack, Path]]:
    seed = tmp_path_factory.mktemp("seed") / "seed.json"
    seed.write_text(json.dumps({"projects": [PROJECT]}))
    stack = AirflowStack(
        tmp_path_factory.mktemp("airflow-home"),
        {CONN_ID: Emulator("archivable", str(seed), operation_duration=1.0)},
        extra_dags=[TEST_DAGS / f"{DAG_ID}.py"],
    )
    started = time.monotonic()
    try:
        stack.start()
    except BaseException:
        print(stack.log_tails())
        raise
    print(f"deployment up in {time.monotonic() - started:.1f} s: {stack.timings}")
    try:
        yield stack, seed
    finally:
        stack.stop()


def test_the_task_waits_deferred_in_no_slot_then_archives_the_pool_in_the_same_try(
    deployment: tuple[AirflowStack, Path],
) -> None:
    stack, seed = deployment
    window_ends = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=WINDOW_LEFT)
    pool = {"id": "51", "project_id": "50", "status": "CLOSED"}
    pool["last_rejection"] = (window_ends - dt.timedelta(days=9)).isoformat()
    seed.write_text(json.dumps({"projects": [PROJECT], "pools": [pool]}))
    stack.restart_emulator(CONN_ID)
    emulator = stack.emulators[CONN_ID]

    run_id = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"pool_id": "51"}})[
        "dag_run_id"
    ]
    task_path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/archive_pool"

    def deferred() -> tuple[dict[str, Any], dict[str, Any]] | None:
        stack.check_alive()
        task = stack.api("GET", task_path)
        if task["state"] in ("success", "failed"):
            raise AssertionError(f"the task ended {task['state']} without deferring")
        return (task, stack.api("GET", f"/pools/{TOLOKA_POOL}")) if task["state"] == "deferred" else None

    try:
        task, airflow_pool = wait_until("the task defers", deferred, RUN_DEADLINE, every=1)
    except BaseException:
        print(stack.log_tails())
        raise
    # Waiting: no worker process and no slot of the task's Airflow pool; nothing archived yet.
    assert task["pool"] == TOLOKA_POOL
    assert (airflow_pool["running_slots"], airflow_pool["deferred_slots"]) == (0, 1), airflow_pool
    assert emulator.object("pool", "51")["status"] == "CLOSED"
    assert not emulator.operations()

    def finished() -> dict[str, Any] | None:
        stack.check_alive()
        run = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = wait_until("the DAG run finishes", finished, RUN_DEADLINE, every=2)
    logs = {
        path.name: path.read_text(errors="replace")
        for path in sorted((stack.home / "logs" / f"dag_id={DAG_ID}").rglob("attempt=*.log*"))
    }
    assert run["state"] == "success", f"{logs}\n{stack.log_tails()}"
    tries = stack.api("GET", f"{task_path}/tries")["task_instances"]
    assert [t["state"] for t in tries] == ["success"]  # one try: the same task archived the pool
    [operation] = emulator.operations()
    assert operation["type"] == "POOL.ARCHIVE"
    assert emulator.object("pool", "51")["status"] == "ARCHIVED"
    worker_log = "".join(text for name, text in logs.items() if ".trigger." not in name)
    assert "THERE_IS_REJECTED_ASSIGNMENT at check 1. Next check at" in worker_log
    assert any(".log.trigger." in name for name in logs), list(logs)
