"""The deployment test's ``wait_until_archivable`` run: a pool in its rejection window until the task waits.

Its emulator (``toloka_archivable``) starts with the pool's last rejection at start-up, so the task's first
archive request is refused however slowly it starts. Once the task is seen deferred, the window passes: an
emulator in its own process has no clock to move, so it restarts on the same seed with the rejection 9 days
earlier, which is the same thing. The task runs in an Airflow pool of its own, so the slots that pool shows
taken are this task's alone. ``Watch`` records what the task and its pool looked like while the runs went on.
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
PROJECT = {"id": "50", "public_name": "Deployment: wait until archivable"}
# conf, and the objects the run archives (test_every_object_archived_by_exactly_one_operation checks them).
RUN: tuple[dict[str, Any], dict[str, list[tuple[str, str]]]] = (
    {"pool_id": "51"},
    {CONN_ID: [("pool", "51")]},
)


def _write_seed(path: Path, last_rejection: dt.datetime) -> None:
    pool = {"id": "51", "project_id": "50", "status": "CLOSED", "last_rejection": last_rejection.isoformat()}
    path.write_text(json.dumps({"projects": [PROJECT], "pools": [pool]}))


def emulator(seed_dir: Path) -> Emulator:
    """The run's emulator: the pool's assignments were rejected just now (archivable in 9 days)."""
    seed = seed_dir / "archivable-seed.json"
    _write_seed(seed, dt.datetime.now(dt.UTC))
    return Emulator("archivable", str(seed), operation_duration=1.0)


def create_pool(stack: AirflowStack) -> None:
    stack.api(
        "POST", "/pools", {"name": AIRFLOW_POOL, "slots": 1, "description": "wait_until_archivable test"}
    )


def pass_window(stack: AirflowStack) -> None:
    """Move the emulator's time past the window: the same pool, its last rejection 9 days and a minute ago."""
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(days=9, minutes=1)
    _write_seed(Path(stack.emulators[CONN_ID].seed), ended)
    stack.restart_emulator(CONN_ID)


@dataclass
class Watch:
    """The task's state and its Airflow pool's slots each time the deployment test looks; the window passes
    the first time the task is seen deferred."""

    seen: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    window_passed: bool = False

    def look(self, stack: AirflowStack, run_id: str) -> None:
        task = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/archive_pool")
        pool = stack.api("GET", f"/pools/{AIRFLOW_POOL}")
        slots = {name: pool[name] for name in ("running_slots", "queued_slots", "deferred_slots")}
        self.seen.append((task["state"], slots))
        if task["state"] == "deferred" and not self.window_passed:
            pass_window(stack)
            self.window_passed = True

    def states(self) -> list[tuple[str, dict[str, int]]]:
        """What was seen, each change once."""
        return [entry for i, entry in enumerate(self.seen) if i == 0 or self.seen[i - 1] != entry]
