"""The provider in a real Airflow deployment: tasks in worker subprocesses, connections from the metadata DB
through the Execution API, triggers rebuilt in the triggerer, retries in fresh processes.

One deployment serves the whole module: it starts once, every DAG run is triggered at once, and each test
checks one thing a user would notice. Run alone with ``./dev test -m deployment``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import rejection_window
from .stack import TEST_DAGS, TOLOKA_POOL, AirflowStack, Emulator, wait_until

pytestmark = pytest.mark.deployment

SEED = str(Path(__file__).with_name("seed.json"))
# Operations take long enough that every deferrable task really defers: the sensor checks once before
# deferring, and it starts a few seconds (more on a loaded machine) after the archive was submitted.
OPERATION_SECONDS = 10.0
# The slow account's operations outlast the resume DAG's first try (execution_timeout 6 s) and the
# retry's start, however loaded the machine.
SLOW_OPERATION_SECONDS = 30.0
RUN_DEADLINE = 300.0

# dag_id -> (conf, {emulator name: objects the run archives there})
RUNS: dict[str, tuple[dict[str, Any], dict[str, list[tuple[str, str]]]]] = {
    "example_toloka_archive": (
        {"project_id": "10", "pool_ids": ["11", "12"], "training_id": "13"},
        {"toloka_default": [("pool", "11"), ("pool", "12"), ("training", "13"), ("project", "10")]},
    ),
    "example_toloka_sensor": ({"pool_id": "21"}, {"toloka_default": [("pool", "21")]}),
    "example_toloka_deferrable": (
        {"project_id": "30", "pool_id": "31", "training_id": "33"},
        {"toloka_default": [("pool", "31"), ("training", "33"), ("project", "30")]},
    ),
    "toloka_resume_after_timeout": ({"pool_id": "41"}, {"toloka_slow": [("pool", "41")]}),
    "toloka_cascade_deferrable": (
        {"project_id": "60"},
        {
            "toloka_default": [
                *(("pool", p) for p in ("61", "62", "63", "64")),
                ("training", "65"),
                ("project", "60"),
            ]
        },
    ),
    rejection_window.DAG_ID: rejection_window.RUN,
}
# The tasks of example_toloka_deferrable that wait in the triggerer (archive_pool does not wait at all).
DEFERRING_TASKS = ("wait_for_pool", "archive_training", "archive_project")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    emulators = {
        "toloka_default": Emulator("default", SEED, OPERATION_SECONDS),
        "toloka_slow": Emulator("slow", SEED, SLOW_OPERATION_SECONDS),
        rejection_window.CONN_ID: rejection_window.emulator(tmp_path_factory.mktemp("seed")),
    }
    stack = AirflowStack(
        tmp_path_factory.mktemp("airflow-home"),
        emulators,
        extra_dags=sorted(TEST_DAGS.glob("*.py")),
    )
    started = time.monotonic()
    try:
        stack.start()
    except BaseException:
        print(stack.log_tails())
        raise
    print(f"deployment up in {time.monotonic() - started:.1f} s: {stack.timings}")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def waiting() -> rejection_window.Watch:
    return rejection_window.Watch()


@pytest.fixture(scope="module")
def runs(deployment: AirflowStack, waiting: rejection_window.Watch) -> dict[str, dict[str, Any]]:
    """Trigger every DAG at once and wait for all of them; dag_id -> the finished DAG run."""
    rejection_window.create_pool(deployment)
    started = time.monotonic()
    run_ids = {
        dag_id: deployment.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})[
            "dag_run_id"
        ]
        for dag_id, (conf, _) in RUNS.items()
    }

    def finished() -> dict[str, dict[str, Any]] | None:
        deployment.check_alive()
        waiting.look(deployment, run_ids[rejection_window.DAG_ID])
        states = {d: deployment.api("GET", f"/dags/{d}/dagRuns/{r}") for d, r in run_ids.items()}
        return states if all(s["state"] in ("success", "failed") for s in states.values()) else None

    try:
        result = wait_until("every DAG run finishes", finished, RUN_DEADLINE, every=2)
    except BaseException:
        print(deployment.log_tails())
        raise
    # Airflow's race that fails a resumed deferred task (docs/deployment.md, Troubleshooting) leaves this
    # audit event; the retry then runs, and test_every_object_archived_by_exactly_one_operation holds anyway.
    raced = deployment.api("GET", "/eventLogs", event="state mismatch")["total_entries"]
    print(f"DAG runs finished in {time.monotonic() - started:.1f} s; state-mismatch retries: {raced}")
    return result


def task_instances(deployment: AirflowStack, run: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances"
    return list(deployment.api("GET", path)["task_instances"])


def task_logs(deployment: AirflowStack, dag_id: str, task_id: str) -> dict[str, str]:
    """Every log file of a task (all tries and maps, worker and triggerer parts): relative path -> text."""
    base = deployment.home / "logs" / f"dag_id={dag_id}"
    return {
        str(path.relative_to(base)): path.read_text(errors="replace")
        for path in sorted(base.glob(f"run_id=*/task_id={task_id}/**/attempt=*.log*"))
    }


def describe_failure(deployment: AirflowStack, run: dict[str, Any]) -> str:
    lines = [f"{run['dag_id']} ended {run['state']}"]
    for ti in task_instances(deployment, run):
        lines.append(f"  {ti['task_id']}[{ti['map_index']}] try {ti['try_number']}: {ti['state']}")
        if ti["state"] != "success":
            for name, text in task_logs(deployment, run["dag_id"], ti["task_id"]).items():
                lines.append(f"----- {name}\n" + "\n".join(text.splitlines()[-40:]))
    return "\n".join(lines) + "\n" + deployment.log_tails()


def test_every_dag_run_succeeds(deployment: AirflowStack, runs: dict[str, dict[str, Any]]) -> None:
    failed = [describe_failure(deployment, run) for run in runs.values() if run["state"] != "success"]
    assert not failed, "\n\n".join(failed)


def test_every_object_archived_by_exactly_one_operation(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    for emulator_name, emulator in deployment.emulators.items():
        expected = [obj for _, targets in RUNS.values() for obj in targets.get(emulator_name, [])]
        archives: dict[tuple[str, str], int] = {}
        for operation in emulator.operations():
            kind, _ = operation["type"].lower().split(".")
            key = (kind, str(operation["parameters"][f"{kind}_id"]))
            archives[key] = archives.get(key, 0) + 1
        assert archives == dict.fromkeys(expected, 1), emulator_name
        for kind, object_id in expected:
            assert emulator.object(kind, object_id)["status"] == "ARCHIVED", (emulator_name, kind, object_id)


def test_example_dags_run_in_the_toloka_pool(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    for dag_id, run in runs.items():
        if dag_id.startswith("example_"):
            assert {ti["pool"] for ti in task_instances(deployment, run)} == {TOLOKA_POOL}, dag_id


def test_retry_after_timeout_waits_on_the_running_archive(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    run = runs["toloka_resume_after_timeout"]
    tries = deployment.api(
        "GET", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances/archive_pool/tries"
    )["task_instances"]
    assert [t["state"] for t in sorted(tries, key=lambda t: t["try_number"])] == ["failed", "success"]
    logs = task_logs(deployment, run["dag_id"], "archive_pool")
    first = next(text for name, text in logs.items() if name.endswith("attempt=1.log"))
    second = next(text for name, text in logs.items() if name.endswith("attempt=2.log"))
    assert "Process timed out" in first
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

    # Airflow 3.3+: the retry reconnects to the operation id kept in task_state_store (no second
    # archive request); older Airflow: its archive request meets the running one and waits on it.
    assert ("Reconnecting to existing job" if AIRFLOW_V_3_3_PLUS else "already running") in second


def test_wait_until_archivable_waits_deferred_holding_no_slot_then_archives_in_that_try(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]], waiting: rejection_window.Watch
) -> None:
    # Deferred, the task has no process and takes no slot of its Airflow pool (it has one, of its own).
    deferred = ("deferred", {"running_slots": 0, "queued_slots": 0, "deferred_slots": 1})
    assert deferred in waiting.seen, waiting.states()
    run = runs[rejection_window.DAG_ID]
    tries = deployment.api(
        "GET", f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances/archive_pool/tries"
    )["task_instances"]
    last = max(tries, key=lambda t: t["try_number"])
    assert last["state"] == "success"
    logs = task_logs(deployment, run["dag_id"], "archive_pool")
    worker_log = next(
        text for name, text in logs.items() if name.endswith(f"attempt={last['try_number']}.log")
    )
    # The try that succeeded was refused, waited, and archived (the one archive operation is checked above).
    assert "Toloka answered THERE_IS_REJECTED_ASSIGNMENT at check 1. Next check at" in worker_log
    assert "Toloka accepted the archive of pool 51 at check 2" in worker_log
    assert any(".log.trigger." in name for name in logs), list(logs)


def test_deferrable_tasks_ran_their_wait_in_the_triggerer(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    for task_id in DEFERRING_TASKS:
        logs = task_logs(deployment, "example_toloka_deferrable", task_id)
        assert any("Pausing task as DEFERRED" in text for text in logs.values()), (
            f"{task_id} never deferred; if its operation had already finished when it started, the machine "
            f"is slower than OPERATION_SECONDS={OPERATION_SECONDS} allows for: {list(logs)}"
        )
        assert any(".log.trigger." in name for name in logs), f"{task_id}: no triggerer log in {list(logs)}"


def test_the_deferrable_cascade_ran_in_the_triggerer_and_resumed_to_record_every_object(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    """The worker deferred without a request to Toloka; the triggerer sent every archive and waited on it
    (each object's one operation is checked above); the resumed task recorded an asset event per object."""
    import sqlalchemy as sa

    dag_id, task_id = "toloka_cascade_deferrable", "archive_project_cascade"
    logs = task_logs(deployment, dag_id, task_id)
    worker = {name: text for name, text in logs.items() if ".log.trigger." not in name}
    trigger = {name: text for name, text in logs.items() if ".log.trigger." in name}
    assert any("Pausing task as DEFERRED" in text for text in worker.values()), list(logs)
    assert trigger, f"no triggerer log in {list(logs)}"
    assert any("Archive of project 60 submitted" in text for text in trigger.values()), trigger
    assert not any("submitted" in text for text in worker.values()), "the worker sent an archive"
    assert [ti["state"] for ti in task_instances(deployment, runs[dag_id])] == ["success"]

    engine = sa.create_engine(deployment.database_url)
    try:
        with engine.connect() as db:
            uris = list(
                db.execute(
                    sa.text(
                        "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                        "WHERE e.source_dag_id = :dag AND e.source_task_id = :task"
                    ),
                    {"dag": dag_id, "task": task_id},
                ).scalars()
            )
    finally:
        engine.dispose()
    # toloka://<host>/pools/61 -> "pool 61"
    recorded = sorted(f"{uri.split('/')[-2].removesuffix('s')} {uri.split('/')[-1]}" for uri in uris)
    expected = sorted(f"{kind} {object_id}" for kind, object_id in RUNS[dag_id][1]["toloka_default"])
    assert recorded == expected


def test_deferred_waits_went_through_the_shared_reader(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    """Each deferred wait registered with the triggerer's one reader (docs/deferrable.md, How much it costs),
    and the readers, closing with their last wait, account for every one of them."""
    trigger_logs = {
        name: text
        for task_id in DEFERRING_TASKS
        for name, text in task_logs(deployment, "example_toloka_deferrable", task_id).items()
        if ".log.trigger." in name
    }
    assert trigger_logs, "no task deferred"
    for name, text in trigger_logs.items():
        assert "through the triggerer's shared reader of connection 'toloka_default'" in text, name
    triggerer = (deployment.home / "components" / "triggerer.log").read_text(errors="replace")
    served = re.findall(r"connection 'toloka_default' closed: (\d+) waits served", triggerer)
    assert sum(map(int, served)) >= len(trigger_logs)


def test_pool_archive_records_its_asset_event_and_starts_the_dag_scheduled_on_it(
    deployment: AirflowStack, runs: dict[str, dict[str, Any]]
) -> None:
    """Seen in the metadata DB: the event of pool 11's toloka:// asset, then the asset-triggered run."""
    import sqlalchemy as sa

    engine = sa.create_engine(deployment.database_url)
    host = deployment.emulators["toloka_default"].url.split("://", 1)[1].rstrip("/")
    uri = f"toloka://{host}/pools/11"

    def scheduled_run() -> Any:
        with engine.connect() as db:
            return db.execute(
                sa.text(
                    "SELECT run_id, state, run_type FROM dag_run WHERE dag_id = 'toloka_on_pool_archived' "
                    "AND state IN ('success', 'failed')"
                )
            ).first()

    try:
        run = wait_until("the DAG scheduled on pool 11's asset runs", scheduled_run, 120, every=2)
    finally:
        engine.dispose()
    with engine.connect() as db:
        events = db.execute(
            sa.text(
                "SELECT e.extra, e.source_dag_id, e.source_task_id FROM asset_event e "
                "JOIN asset a ON a.id = e.asset_id WHERE a.uri = :uri"
            ),
            {"uri": uri},
        ).all()
    engine.dispose()
    assert len(events) == 1, f"{uri}: {events}"
    extra, source_dag, source_task = events[0]
    extra = json.loads(extra) if isinstance(extra, str) else extra
    assert (source_dag, source_task) == ("example_toloka_archive", "archive_pool")
    assert (extra["kind"], extra["id"], extra["environment"]) == ("pool", "11", host)
    assert extra["operation_id"]
    assert (run.run_type, run.state) == ("asset_triggered", "success")


def test_token_is_in_no_log_file(deployment: AirflowStack, runs: dict[str, dict[str, Any]]) -> None:
    tokens = [emulator.token for emulator in deployment.emulators.values()]
    files = [
        *(deployment.home / "logs").rglob("*"),
        # Component output too, but not the emulators': they print the token they accept.
        *(p for p in (deployment.home / "components").glob("*.log") if not p.name.startswith("emulator")),
    ]
    checked = [path for path in files if path.is_file()]
    assert len(checked) > 10
    leaks = [str(path) for path in checked for token in tokens if token in path.read_text(errors="replace")]
    assert not leaks
