"""``./dev demo``: run every example DAG with ``airflow dags test`` against a freshly seeded emulator.

It shows a new user the whole provider without a Toloka account: a throw-away ``AIRFLOW_HOME`` with a
SQLite metadata DB, the emulator seeded with the ``demo`` world, each example DAG run for real (tasks,
XCom, deferral and all), then each object's status before and after. Exits non-zero if any run failed.
Runs go two at a time (``--jobs``), each in its own copy of the metadata DB: each ``airflow dags test`` is
one busy process for about half a minute, most of it Airflow starting.

It lives beside the tests, not in the package: it needs the repository's ``example_dags/``, which the
wheel does not ship. ``./dev demo`` runs it as ``python -m tests.demo`` from the repository's root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from airflow_provider_toloka.emulator.seeding import resolve_seed
from airflow_provider_toloka.emulator.server import TolokaEmulator

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


def _objects(seed: Path) -> list[tuple[str, str]]:
    data = json.loads(seed.read_text(encoding="utf-8"))
    kinds = ("projects", "pools", "trainings")
    return [(kind[:-1], str(entry["id"])) for kind in kinds for entry in data[kind]]


def _statuses(emulator: TolokaEmulator, objects: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    return {obj: emulator.object(*obj)["status"] for obj in objects}


def _waves(dag_folder: str) -> list[list[str]]:
    """The DAG ids in waves whose runs may go side by side; refuse to go on if any file fails to import.

    A DAG that reads the whole account (housekeeping) runs alone, where it falls in the alphabetical order,
    so what it finds never depends on which other example is half done.
    """
    from airflow_provider_toloka.compat import dag_bag
    from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

    bag = dag_bag(dag_folder)
    if bag.import_errors:
        raise SystemExit(f"DAG files failed to import: {bag.import_errors}")
    waves: list[list[str]] = [[]]
    for dag_id in sorted(bag.dag_ids):
        if any(isinstance(task, TolokaHousekeepingOperator) for task in bag.dags[dag_id].tasks):
            waves += [[dag_id], []]
        else:
            waves[-1].append(dag_id)
    return [wave for wave in waves if wave]


def _approvals(dag_folder: str) -> dict[str, list[str]]:
    """dag_id -> its human-in-the-loop tasks (Airflow 3.1+), which the demo marks done: nobody answers."""
    from airflow_provider_toloka.compat import approval_operator, dag_bag

    approval = approval_operator()
    if approval is None:  # Airflow 3.0: no such tasks
        return {}
    bag = dag_bag(dag_folder)
    found = {d: [t.task_id for t in dag.tasks if isinstance(t, approval)] for d, dag in bag.dags.items()}
    return {dag_id: task_ids for dag_id, task_ids in found.items() if task_ids}


def _dags_test(
    dag_id: str, home: Path, env: dict[str, str], verbose: bool, approve: list[str] | None = None
) -> tuple[int, float]:
    """``airflow dags test`` in its own AIRFLOW_HOME, on a copy of the migrated metadata DB: runs side by
    side never wait on one SQLite file. Tasks in ``approve`` (approvals) are marked done: no one is there
    to answer them, and ``dags test`` would wait for the answer for ever."""
    run_home = home / dag_id
    run_home.mkdir()
    shutil.copy(home / "airflow.db", run_home / "airflow.db")
    print(f"airflow dags test {dag_id} ...", flush=True)
    started = time.monotonic()
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if approve:
        print(f"  {dag_id}: the demo approves {', '.join(approve)} (marked done, nobody to ask)", flush=True)
        command += ["--mark-success-pattern", "|".join(approve)]
    run = subprocess.run(
        command,
        env={**env, "AIRFLOW_HOME": str(run_home)},
        capture_output=not verbose,
        text=True,
    )
    if run.returncode and not verbose:
        print(f"{dag_id}:", run.stdout[-4000:], run.stderr[-4000:], sep="\n", flush=True)
    return run.returncode, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__)
    parser.add_argument("--dags", default=str(EXAMPLES), help="DAG folder (default: the example DAGs)")
    parser.add_argument("--operation-duration", type=float, default=1.0, help="seconds per Toloka operation")
    parser.add_argument("--verbose", action="store_true", help="show the output of every `airflow dags test`")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="DAG runs side by side (default: 2, or 1 on one core; 1 with --verbose)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    jobs = 1 if args.verbose else args.jobs

    seed = resolve_seed("demo")
    objects = _objects(seed)
    home = Path(tempfile.mkdtemp(prefix="toloka-demo-airflow-"))
    with TolokaEmulator(operation_duration=args.operation_duration, seed=seed) as emulator:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": args.dags,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_TOLOKA_DEFAULT": emulator.airflow_conn_json(),
        }
        os.environ.update(env)  # this process parses the DAGs too
        print(f"Toloka emulator at {emulator.url}; AIRFLOW_HOME={home}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        before = _statuses(emulator, objects)
        results: dict[str, tuple[int, float]] = {}
        approvals = _approvals(args.dags)
        with ThreadPoolExecutor(jobs) as pool:
            for wave in _waves(args.dags):
                runs = {
                    dag_id: pool.submit(_dags_test, dag_id, home, env, args.verbose, approvals.get(dag_id))
                    for dag_id in wave
                }
                results.update({dag_id: run.result() for dag_id, run in runs.items()})
        after = _statuses(emulator, objects)
        operations = emulator.operations()

    print("\nDAG runs:")
    for dag_id, (code, seconds) in results.items():
        print(f"  {dag_id:<36} {'success' if code == 0 else 'FAILED':<8} {seconds:5.1f} s")
    print("\nToloka objects (emulator):")
    print(f"  {'object':<16} {'before':<10} after")
    for kind, object_id in objects:
        print(f"  {kind + ' ' + object_id:<16} {before[(kind, object_id)]:<10} {after[(kind, object_id)]}")
    print(f"\n{len(operations)} operations started: " + ", ".join(sorted({op["type"] for op in operations})))
    return 1 if any(code for code, _ in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
