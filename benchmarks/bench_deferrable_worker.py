"""Worker-seconds of the cascade and of housekeeping, in the worker (``deferrable=False``) and deferred.

    .venv/bin/python benchmarks/bench_deferrable_worker.py [--pools 300] [--rate 60]

A fresh emulator in its own process per run: one project of ``--pools`` closed pools (the cascade), or
``--pools`` closed pools spread over 20 idle projects (housekeeping); a limit of ``--rate`` requests a
second, which the connection declares (``requests_per_second``), 20 ms latency, 0.5 s operations.

In the worker the task holds its slot for the whole run. Deferred, it holds it for ``execute`` up to the
deferral and for the resume that records the event; the run itself is the trigger's (``run()`` iterated
here, as the triggerer would), shown as "triggerer s". The worker's part does not grow with the objects:
it sends no request to Toloka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="toloka-bench-airflow-"))

LATENCY, OPERATION_DURATION, PROJECTS = 0.02, 0.5, 20
OLD = "2020-01-01T00:00:00"


def write_seed(directory: Path, pools: int, projects: int) -> Path:
    seed = {
        "projects": [{"id": str(p + 1), "created": OLD} for p in range(projects)],
        "pools": [
            {"id": str(10_000 + i), "project_id": str(i % projects + 1), "status": "CLOSED", "created": OLD}
            for i in range(pools)
        ],
    }
    path = directory / f"seed-{projects}.json"
    path.write_text(json.dumps(seed))
    return path


@contextmanager
def emulator(seed: Path, rate: float) -> Iterator[None]:
    command = [
        sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--seed", str(seed),
        "--operation-duration", str(OPERATION_DURATION), "--rate-limit", str(rate), "--latency", str(LATENCY),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split("serving ", 1)[1].split("/api/v1", 1)[0]
        extra = {"auth_scheme": "OAuth", "requests_per_second": rate}
        os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = json.dumps(
            {"conn_type": "toloka", "host": url, "password": "test-token", "extra": extra}
        )
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


class _TI:
    def xcom_push(self, key: str, value: object) -> None:
        pass


def operator(kind: str, deferrable: bool) -> Any:
    from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator
    from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

    if kind == "cascade":
        return TolokaArchiveProjectOperator(
            task_id="c", project_id="1", cascade=True, deferrable=deferrable, poll_interval=1.0
        )
    return TolokaHousekeepingOperator(task_id="h", min_idle_days=0, deferrable=deferrable, poll_interval=1.0)


def run(kind: str, deferrable: bool) -> dict[str, float]:
    from airflow.providers.common.compat.sdk import TaskDeferred

    task = operator(kind, deferrable)
    context: Any = {"ti": _TI()}
    started = time.monotonic()
    if not deferrable:
        task.execute(context)
        return {"worker": time.monotonic() - started, "triggerer": 0.0}
    try:
        task.execute(context)
        raise AssertionError("expected the task to defer")
    except TaskDeferred as deferred:
        worker = time.monotonic() - started
        trigger, method = deferred.trigger, deferred.method_name

    async def fire() -> Any:
        [event] = [event.payload async for event in trigger.run()]
        return event

    started = time.monotonic()
    event = asyncio.run(fire())
    triggerer = time.monotonic() - started
    started = time.monotonic()
    getattr(task, method)(context, event)
    return {"worker": worker + time.monotonic() - started, "triggerer": triggerer}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pools", type=int, default=300)
    parser.add_argument("--rate", type=float, default=60.0)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for kind, projects in (("cascade", 1), ("housekeeping", PROJECTS)):
            seed = write_seed(Path(directory), args.pools, projects)
            for deferrable in (False, True):
                with emulator(seed, args.rate):
                    result = run(kind, deferrable)
                label = f"{kind} ({projects} project(s)), deferrable={deferrable}"
                rows.append(f"{label:<48} {result['worker']:>9.2f} {result['triggerer']:>12.2f}")
    # After every run: the tasks' own log lines go to the terminal as they run.
    print(
        f"\n{args.pools} pools, {args.rate:g} req/s (declared = limit), operations {OPERATION_DURATION:g} s"
    )
    print(f"{'task':<48} {'worker s':>9} {'triggerer s':>12}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
