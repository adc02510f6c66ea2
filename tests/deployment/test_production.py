"""The provider where production runs: PostgreSQL, Celery on Redis, two workers, two triggerers, and faults.

One DAG run archives two dozen pools (half waiting in a worker, half deferred), then a training, then the
project, while the test strikes, each at a logged time:

1. a 60 s Toloka outage (the emulator stops listening and comes back with its state);
2. SIGKILL of the triggerer holding the most deferred waits, which is then started again;
3. SIGKILL of the whole process group of the Celery worker running the most tasks, started again;
4. a restart of the api-server while the training waits.

What a user must see: the run succeeds, every object is ARCHIVED by exactly one archive operation, no token
reaches a log, and no try fails on a Toloka error: the outage and the triggerer's death cost no task a retry
(the tries killed with their worker are retried by design). Run alone with ``./dev test -m production``;
it needs Debian's ``postgresql`` and ``redis-server`` (``.ci/run`` installs them) and skips without them,
unless ``TOLOKA_REQUIRE_PRODUCTION_TEST`` is set (CI), where it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .services import PostgreSQL, Redis, missing_services
from .stack import AirflowStack, Emulator, wait_until

pytestmark = pytest.mark.production

DAG_FILE = Path(__file__).with_name("dags") / "production" / "toloka_production.py"
DAG_ID = "toloka_production"
# Operations never end by themselves: the test ends them by advancing the emulator's clock this much once
# it has struck while they run (the pools after the outage and the worker's death, the training after the
# api-server restart, then the project). So the waits are in progress whenever a fault strikes, however
# slow the machine, and no one waits out a fixed duration (90 s per step before: a third of the test).
OPERATION_SECONDS = 3600.0
OUTAGE_SECONDS = 60.0
# The production settings the test needs (docs/deployment.md, "A production recipe"): a try whose worker
# died is failed, and so retried, after this many seconds without a heartbeat (Airflow's default: 300).
# It must outlast an api-server restart (no heartbeat gets through meanwhile), which takes up to a minute on
# a busy 2-core machine; so must the failed heartbeats a try accepts before it gives up (default 3, ~40 s).
SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
    "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS": "10",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # A try's calls to the Execution API (start, heartbeat, finish) wait this long for a busy api-server
    # (default 5 s): a dozen tries starting at once on two cores otherwise fail to start and are retried.
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
}
RUN_DEADLINE = 600.0

PROJECT = "100"
WORKER_POOLS = [str(101 + i) for i in range(12)]
DEFERRED_POOLS = [str(201 + i) for i in range(12)]
TRAINING = "301"
OBJECTS = [
    *(("pool", p) for p in WORKER_POOLS + DEFERRED_POOLS),
    ("training", TRAINING),
    ("project", PROJECT),
]


def seed(path: Path) -> Path:
    """The DAG's objects (the same ids as in its file), closed and ready to archive."""
    pools = WORKER_POOLS + DEFERRED_POOLS
    path.write_text(
        json.dumps(
            {
                "projects": [{"id": PROJECT, "public_name": "Production: two dozen pools"}],
                "pools": [{"id": p, "project_id": PROJECT, "status": "CLOSED"} for p in pools],
                "trainings": [
                    {"id": TRAINING, "project_id": PROJECT, "status": "CLOSED", "linked_pool_ids": pools}
                ],
            }
        )
    )
    return path


@dataclass
class Run:
    """What the run went through: the faults with their times, the tries they killed, the end state."""

    started: float = field(default_factory=time.monotonic)
    faults: list[tuple[float, str]] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)  # "task[map_index] try N", killed with the worker
    state: dict[str, Any] = field(default_factory=dict)
    task_instances: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def fault(self, text: str) -> None:
        at = time.monotonic() - self.started
        self.faults.append((round(at, 1), text))
        print(f"[{at:6.1f} s] {text}", flush=True)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowStack, PostgreSQL]]:
    missing = missing_services()
    if missing:
        message = f"needs the Debian packages {', '.join(missing)} (.ci/run installs them)"
        if os.environ.get("TOLOKA_REQUIRE_PRODUCTION_TEST"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("production")
    postgres, redis = PostgreSQL(), Redis(root / "redis")
    emulator = Emulator("default", str(seed(root / "seed.json")), OPERATION_SECONDS, OUTAGE_SECONDS)
    stack = AirflowStack(
        root / "airflow-home",
        {"toloka_default": emulator},
        extra_dags=[DAG_FILE],
        pool_slots=64,
        database_url=postgres.url,
        celery_broker_url=redis.url,
        celery_workers=2,
        worker_concurrency=8,
        triggerers=2,
        settings=SETTINGS,
    )
    started = time.monotonic()
    try:
        postgres.start()
        redis.start()
        stack.start()
    except BaseException:
        print(stack.log_tails())
        stack.stop()
        redis.stop()
        postgres.stop()
        raise
    print(f"production stack up in {time.monotonic() - started:.1f} s: {stack.timings}")
    try:
        yield stack, postgres
    finally:
        stack.stop()
        redis.stop()
        postgres.stop()


def task_instances(stack: AirflowStack, run_id: str) -> list[dict[str, Any]]:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances"
    return list(stack.api("GET", path, limit=100)["task_instances"])


def emulator_said(stack: AirflowStack, text: str) -> bool:
    return text in (stack.output_dir / "emulator-toloka_default.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def run(production: tuple[AirflowStack, PostgreSQL]) -> Run:
    """Trigger the DAG, strike the faults while its tasks wait, and wait for the run to end."""
    stack, postgres = production
    emulator = stack.emulators["toloka_default"]
    result = Run()
    run_id = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]

    def tis() -> list[dict[str, Any]]:
        stack.check_alive()
        return task_instances(stack, run_id)

    def waiting() -> bool:
        pools = {
            str(op["parameters"]["pool_id"]) for op in emulator.operations() if op["type"] == "POOL.ARCHIVE"
        }
        deferred = [
            ti for ti in tis() if ti["task_id"] == "archive_pool_deferred" and ti["state"] == "deferred"
        ]
        return pools >= set(WORKER_POOLS + DEFERRED_POOLS) and len(deferred) >= len(DEFERRED_POOLS) // 2

    try:
        wait_until("every pool archive is submitted and the deferred ones wait", waiting, 300, every=1)
        # 1. The outage: the emulator stops listening and comes back after OUTAGE_SECONDS, state kept.
        os.kill(stack.processes["emulator-toloka_default"].pid, signal.SIGUSR1)
        wait_until("the emulator stops listening", lambda: emulator_said(stack, "Outage: not listening"), 30)
        result.fault(f"Toloka outage begins ({OUTAGE_SECONDS:g} s, connections refused)")
        time.sleep(5)  # choreography, not an assertion: the outage is under way when the triggerer dies

        # 2. The triggerer holding the most deferred waits (the metadata DB knows which).
        held = postgres.query(
            "SELECT job.hostname, count(*) FROM trigger JOIN job ON job.id = trigger.triggerer_id "
            "GROUP BY job.hostname ORDER BY count(*) DESC"
        )
        triggerer = str(held[0][0]) if held else "triggerer-1"
        stack.kill(triggerer)
        result.fault(f"SIGKILL {triggerer}, holding {held[0][1] if held else 0} trigger(s); started again")
        stack.spawn(triggerer)
        time.sleep(15)

        # 3. The Celery worker running the most tries, with its whole process group.
        running = [ti for ti in tis() if ti["state"] == "running"]
        workers = {name: [ti for ti in running if ti["hostname"] == name] for name in stack.commands}
        worker = max((n for n in workers if n.startswith("celery-worker-")), key=lambda n: len(workers[n]))
        stack.kill(worker)
        result.killed = {
            f"{ti['task_id']}[{ti['map_index']}] try {ti['try_number']}" for ti in workers[worker]
        }
        result.fault(
            f"SIGKILL the process group of {worker}, running {len(workers[worker])} tries; started again"
        )
        stack.spawn(worker)

        wait_until("the outage ends", lambda: emulator_said(stack, "Outage over"), OUTAGE_SECONDS + 30)
        result.fault("Toloka outage ends")
        emulator.advance_clock(OPERATION_SECONDS)
        result.fault("the pools' archive operations end (emulator clock advanced)")

        # 4. The api-server, while the training waits in its worker (polling Toloka, past Airflow's start-up
        # calls: a try that cannot reach the api-server while it starts fails, whatever the provider does).
        def training_waits() -> bool:
            stack.check_alive()
            logs = stack.home.glob(f"logs/dag_id={DAG_ID}/run_id=*/task_id=archive_training/attempt=*.log")
            return any("TRAINING.ARCHIVE" in path.read_text(errors="replace") for path in logs)

        wait_until("the training waits", training_waits, 300, every=1)
        stack.kill("api-server", signal.SIGTERM)
        result.fault("api-server stopped (SIGTERM)")
        stack.spawn("api-server")
        wait_until("the api-server is healthy again", stack.healthy, 300)
        result.fault("api-server healthy again")

        def finished() -> dict[str, Any] | None:
            # The training's archive, then the project's: each ends once the test sees it running.
            if any(op["status"] in ("PENDING", "RUNNING") for op in emulator.operations()):
                emulator.advance_clock(OPERATION_SECONDS)
            state = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
            return state if state["state"] in ("success", "failed") else None

        result.state = wait_until("the DAG run ends", finished, RUN_DEADLINE, every=2)
    except BaseException:
        print(stack.log_tails())
        raise
    result.seconds = time.monotonic() - result.started
    result.task_instances = task_instances(stack, run_id)
    report(stack, result)
    return result


def report(stack: AirflowStack, result: Run) -> None:
    operations = stack.emulators["toloka_default"].operations()
    retried = [ti for ti in result.task_instances if ti["try_number"] > 1]
    print(f"\nProduction run {result.state['state']} in {result.seconds:.0f} s (startup {stack.timings})")
    print("faults:")
    for at, text in result.faults:
        print(f"  {at:6.1f} s  {text}")
    print(
        f"tasks: {len(result.task_instances)}; retries used: {len(retried)} "
        + str(sorted(f"{ti['task_id']}[{ti['map_index']}]" for ti in retried))
    )
    distinct = {json.dumps(op["parameters"], sort_keys=True) for op in operations}
    print(
        f"objects: {len(OBJECTS)}; archive operations: {len(operations)}; "
        f"duplicate operations: {len(operations) - len(distinct)}"
    )


def test_the_run_succeeds(run: Run) -> None:
    failed = [
        f"{ti['task_id']}[{ti['map_index']}]: {ti['state']}"
        for ti in run.task_instances
        if ti["state"] != "success"
    ]
    assert run.state["state"] == "success", failed


def test_every_object_archived_by_exactly_one_operation(
    production: tuple[AirflowStack, PostgreSQL], run: Run
) -> None:
    stack, _ = production
    emulator = stack.emulators["toloka_default"]
    archives: dict[tuple[str, str], int] = {}
    for operation in emulator.operations():
        kind, _ = operation["type"].lower().split(".")
        key = (kind, str(operation["parameters"][f"{kind}_id"]))
        archives[key] = archives.get(key, 0) + 1
    assert archives == dict.fromkeys(OBJECTS, 1)
    for kind, object_id in OBJECTS:
        assert emulator.object(kind, object_id)["status"] == "ARCHIVED", (kind, object_id)


def failed_tries(stack: AirflowStack) -> dict[str, list[str]]:
    """Every try that was retried (``task[map] try N``) -> the exception types its log names, if any."""
    found: dict[str, list[str]] = {}
    base = stack.home / "logs" / f"dag_id={DAG_ID}"
    for path in sorted(base.glob("run_id=*/task_id=*/**/attempt=*.log")):
        number = re.fullmatch(r"attempt=(\d+)\.log", path.name)  # not the triggerer's attempt=1.log.trigger.*
        if number is None:
            continue
        parts = path.relative_to(base).parts
        task = parts[1].removeprefix("task_id=")
        index = parts[2].removeprefix("map_index=") if parts[2].startswith("map_index=") else "-1"
        attempt = int(number.group(1))
        if path.with_name(f"attempt={attempt + 1}.log").exists():
            text = path.read_text(errors="replace")
            found[f"{task}[{index}] try {attempt}"] = re.findall(r'"exc_type":"([^"]+)"', text)
    return found


def test_no_try_failed_on_a_toloka_fault(production: tuple[AirflowStack, PostgreSQL], run: Run) -> None:
    """The outage cost no task a retry: every try that failed died with its worker or on Airflow itself.

    The tries SIGKILLed with their worker are retried by design. So, on a machine too busy to restart the
    api-server within a wait, is a try that starts or finishes while the api-server is down (Airflow's
    Execution API refuses it, whatever the provider does). No try may fail on a Toloka error.
    """
    stack, _ = production
    failed = failed_tries(stack)
    print("retried tries and their errors:", failed or "none")
    assert run.killed <= set(failed), "every try killed with its worker is retried"
    toloka = {name: errors for name, errors in failed.items() if any(e.startswith("Toloka") for e in errors)}
    assert not toloka


def test_no_token_in_any_log(production: tuple[AirflowStack, PostgreSQL], run: Run) -> None:
    stack, _ = production
    token = stack.emulators["toloka_default"].token
    files = [
        *(stack.home / "logs").rglob("*"),
        # Component output too, but not the emulator's: it prints the token it accepts.
        *(p for p in stack.output_dir.glob("*.log") if not p.name.startswith("emulator")),
    ]
    checked = [path for path in files if path.is_file()]
    assert len(checked) > 20
    assert not [str(path) for path in checked if token in path.read_text(errors="replace")]
