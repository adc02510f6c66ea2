"""``./dev demo``: run every example DAG with ``airflow dags test`` against a freshly seeded emulator.

It shows a new user the whole provider without a Toloka account: a throw-away ``AIRFLOW_HOME`` with a
SQLite metadata DB, the emulator seeded with the ``demo`` world, each example DAG run for real (tasks,
XCom, deferral and all), then each object's status before and after. Exits non-zero if any run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_provider_toloka.emulator.seeding import resolve_seed
from airflow_provider_toloka.emulator.server import TolokaEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


def _objects(seed: Path) -> list[tuple[str, str]]:
    data = json.loads(seed.read_text(encoding="utf-8"))
    kinds = ("projects", "pools", "trainings")
    return [(kind[:-1], str(entry["id"])) for kind in kinds for entry in data[kind]]


def _statuses(emulator: TolokaEmulator, objects: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    return {obj: emulator.object(*obj)["status"] for obj in objects}


def _dag_ids(dag_folder: str) -> list[str]:
    """Parse the folder the way the DAG processor would; refuse to go on if any file fails to import."""
    from airflow_provider_toloka.compat import dag_bag

    bag = dag_bag(dag_folder)
    if bag.import_errors:
        raise SystemExit(f"DAG files failed to import: {bag.import_errors}")
    return sorted(bag.dag_ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__)
    parser.add_argument("--dags", default=str(EXAMPLES), help="DAG folder (default: the example DAGs)")
    parser.add_argument("--operation-duration", type=float, default=1.0, help="seconds per Toloka operation")
    parser.add_argument("--verbose", action="store_true", help="show the output of every `airflow dags test`")
    args = parser.parse_args(argv)

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
        for dag_id in _dag_ids(args.dags):
            print(f"airflow dags test {dag_id} ...", flush=True)
            started = time.monotonic()
            run = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", dag_id],
                env=env,
                capture_output=not args.verbose,
                text=True,
            )
            results[dag_id] = (run.returncode, time.monotonic() - started)
            if run.returncode and not args.verbose:
                print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
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
