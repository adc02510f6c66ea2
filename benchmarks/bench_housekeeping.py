"""Housekeeping over an emulated account: requests and time of the dry run and the real run.

    .venv/bin/python benchmarks/bench_housekeeping.py [--concurrency 1,8] [--idle 40 --open 40 --recent 40]

Each run gets a fresh emulator in its own process, seeded with an account of active projects: ``--idle``
finished months ago (3 closed pools and a training linked to them each: archived), ``--open`` with an
open pool and ``--recent`` whose pool closed today (both skipped); 20 ms latency per request, operations
take 0.5 s, 100 requests a second before 429 (as in ``bench_cascade.py``).

- one project at a time: ``max_concurrency=1``, what a loop of cascades over the account does.
- ``max_concurrency=N``: N projects at once, one 429 pace, operations in flight shared between them.

Requests are counted on the client (every answer, 429s included).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="toloka-bench-airflow-"))
sys.path.insert(0, str(Path(__file__).parent))

from bench_cascade import _TI, counted, emulator

OLD = "2026-01-05T10:00:00"


def write_seed(directory: Path, idle: int, open_: int, recent: int) -> Path:
    projects: list[dict[str, Any]] = []
    pools: list[dict[str, Any]] = []
    trainings: list[dict[str, Any]] = []
    for number in range(idle + open_ + recent):
        project_id = str(1000 + number)
        projects.append({"id": project_id, "created": OLD})
        pool_ids = [f"{project_id}{n}" for n in range(3)]
        times = {"created": OLD, "last_stopped": OLD}
        for index, pool_id in enumerate(pool_ids):
            pool: dict[str, Any] = {"id": pool_id, "project_id": project_id, "status": "CLOSED", **times}
            if number >= idle and index == 0:  # the skipped ones: open, or closed today
                pool = {
                    "id": pool_id,
                    "project_id": project_id,
                    "status": "OPEN" if number < idle + open_ else "CLOSED",
                }
            pools.append(pool)
        trainings.append(
            {"id": f"{project_id}9", "project_id": project_id, "linked_pool_ids": pool_ids[1:], **times}
        )
    path = directory / "bench-housekeeping-seed.json"
    path.write_text(json.dumps({"projects": projects, "pools": pools, "trainings": trainings}))
    return path


def run(concurrency: int, dry_run: bool) -> tuple[Counter[int], dict[str, Any]]:
    from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

    operator = TolokaHousekeepingOperator(
        task_id="bench", min_idle_days=30, dry_run=dry_run, max_concurrency=concurrency, poll_interval=2
    )
    statuses = counted(operator.hook)
    summary = operator.execute({"ti": _TI()})  # type: ignore[arg-type]
    return statuses, summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,8", help="comma-separated max_concurrency values")
    parser.add_argument("--idle", type=int, default=40)
    parser.add_argument("--open", type=int, default=40)
    parser.add_argument("--recent", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("airflow").setLevel(logging.WARNING)
    # Imported before any clock starts: a worker running the task has Airflow loaded already.
    import airflow_provider_toloka.housekeeping
    import airflow_provider_toloka.operators.housekeeping  # noqa: F401

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        seed = write_seed(Path(directory), args.idle, args.open, args.recent)
        for value in args.concurrency.split(","):
            for dry_run in (True, False):
                with emulator(seed):
                    started = time.perf_counter()
                    statuses, summary = run(int(value), dry_run)
                    wall = time.perf_counter() - started
                rows.append((int(value), dry_run, wall, statuses, summary["counts"]))

    total = args.idle + args.open + args.recent
    print(
        f"\n{total} active projects ({args.idle} idle with 3 pools + 1 training, {args.open} open, "
        f"{args.recent} recent); latency 20 ms, operations 0.5 s, limit 100 req/s"
    )
    header = f"{'run':<34} {'archived':>8} {'skipped':>7} {'wall s':>7} {'requests':>8} {'429s':>5}"
    print(header)
    print("-" * len(header))
    for concurrency, dry_run, wall, statuses, counts in rows:
        label = f"{'dry run' if dry_run else 'real run'}, max_concurrency={concurrency}"
        print(
            f"{label:<34} {counts['archived']:>8} {counts['skipped']:>7} {wall:>7.1f} "
            f"{sum(statuses.values()):>8} {statuses[429]:>5}"
        )


if __name__ == "__main__":
    main()
