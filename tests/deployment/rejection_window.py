"""The deployment test's ``wait_until_archivable`` run: a pool whose rejection window ends soon.

Its emulator (``toloka_archivable``) is seeded once the deployment is up, since the pool's rejection date
depends on when the runs start. The task runs in an Airflow pool of its own, so the slots that pool shows
taken are this task's alone. ``Watch`` records, while the runs go on, what the task and its pool looked like.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stack import AirflowStack, Emulator

CONN_ID = "toloka_archivable"
DAG_ID = "toloka_wait_until_archivable"
AIRFLOW_POOL = "toloka_archivable"
# Seconds of rejection window left when the runs are triggered: the first check falls inside it however slowly
# the task starts (a retry included); a check every 60 s (the shortest archivable_check_interval) follows.
WINDOW_LEFT = 90.0
PROJECT = {"id": "50", "public_name": "Deployment: wait until archivable"}
# conf, and the objects the run archives (test_every_object_archived_by_exactly_one_operation checks them).
RUN: tuple[dict[str, Any], dict[str, list[tuple[str, str]]]] = (
    {"pool_id": "51"},
    {CONN_ID: [("pool", "51")]},
)


def emulator(seed_dir: Path) -> Emulator:
    seed = seed_dir / "archivable-seed.json"
    seed.write_text(json.dumps({"projects": [PROJECT]}))
    return Emulator("archivable", str(seed), operation_duration=1.0)


def open_window(stack: AirflowStack) -> None:
    """Seed the pool, its window ending ``WINDOW_LEFT`` s from now, and give the task its Airflow pool."""
    window_ends = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=WINDOW_LEFT)
    pool = {"id": "51", "project_id": "50", "status": "CLOSED"}
    pool["last_rejection"] = (window_ends - dt.timedelta(days=9)).isoformat()
    Path(stack.emulators[CONN_ID].seed).write_text(json.dumps({"projects": [PROJECT], "pools": [pool]}))
    stack.restart_emulator(CONN_ID)
    stack.api(
        "POST", "/pools", {"name": AIRFLOW_POOL, "slots": 1, "description": "wait_until_archivable test"}
    )


@dataclass
class Watch:
    """The task's state and its Airflow pool's slots, each time the deployment test looks."""

    seen: list[tuple[str, dict[str, int]]] = field(default_factory=list)

    def look(self, stack: AirflowStack, run_id: str) -> None:
        task = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/archive_pool")
        pool = stack.api("GET", f"/pools/{AIRFLOW_POOL}")
        slots = {name: pool[name] for name in ("running_slots", "queued_slots", "deferred_slots")}
        self.seen.append((task["state"], slots))
