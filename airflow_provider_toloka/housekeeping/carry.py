"""What a failed housekeeping try archived, kept for the try that succeeds, so its asset events are not lost.

Airflow records a task's asset events only when it succeeds. A try that archives project A in full and then
fails because of project B records none; the retry lists only active projects, so it never sees A again.
So a failed try leaves the objects it archived here, and the next try that succeeds records them with its
own, then deletes them.

Where they are kept depends on the Airflow minor (``docs/assets.md``):

- 3.3+: the task instance's ``task_state_store`` (key ``toloka_housekeeping_archived``), which outlives
  its tries;
- 3.0 to 3.2: no such store, and Airflow deletes a task's XComs when a new try starts, so an Airflow
  Variable named after the task instance (``toloka_housekeeping_archived:<hash>``, its description naming
  the DAG, run, task and map index).

Outside Airflow's task runner (``execute`` called by hand: no ``outlet_events`` in the context) nothing is
kept, as nothing is recorded either.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

KEY = "toloka_housekeeping_archived"
ArchivedObject = tuple[str, str, "str | None"]


class Carry:
    """The objects archived by earlier, failed tries of this task instance."""

    def load(self) -> list[ArchivedObject]:
        raise NotImplementedError

    def save(self, objects: list[ArchivedObject]) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


def carry_for(context: Context) -> Carry | None:
    """This task instance's carry: its ``task_state_store`` on 3.3+, else a Variable; ``None`` outside
    Airflow's task runner."""
    if context.get("outlet_events") is None:
        return None
    store = context.get("task_state_store")  # type: ignore[typeddict-item,unused-ignore]
    if store is not None:
        return _StateStoreCarry(store)
    ti = context.get("ti")
    names = ("dag_id", "run_id", "task_id", "map_index")
    if ti is None or not all(hasattr(ti, name) for name in names):
        return None
    return _VariableCarry(*(getattr(ti, name) for name in names))


def merge(earlier: list[ArchivedObject], now: list[ArchivedObject]) -> list[ArchivedObject]:
    """Each object once, the earliest report of it first (it carries the archive's operation id)."""
    seen: dict[tuple[str, str], ArchivedObject] = {}
    for kind, object_id, operation_id in [*earlier, *now]:
        seen.setdefault((kind, object_id), (kind, object_id, operation_id))
    return list(seen.values())


def _decode(raw: Any) -> list[ArchivedObject]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    return [(str(kind), str(object_id), None if op is None else str(op)) for kind, object_id, op in raw or []]


class _StateStoreCarry(Carry):
    def __init__(self, store: Any) -> None:
        self._store = store

    def load(self) -> list[ArchivedObject]:
        return _decode(self._store.get(KEY))

    def save(self, objects: list[ArchivedObject]) -> None:
        self._store.set(KEY, [list(obj) for obj in objects])

    def clear(self) -> None:
        self._store.delete(KEY)


class _VariableCarry(Carry):
    def __init__(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> None:
        identity = f"{dag_id}\n{run_id}\n{task_id}\n{map_index}"
        self.key = f"{KEY}:{hashlib.sha256(identity.encode()).hexdigest()[:24]}"
        self.description = (
            f"Objects archived by a failed try of {dag_id}.{task_id} (run {run_id}, map index {map_index}): "
            "the next successful try records their asset events and deletes this variable."
        )

    def load(self) -> list[ArchivedObject]:
        return _decode(_variables().get(self.key, None))  # the default, positional: SDK and DB spell it apart

    def save(self, objects: list[ArchivedObject]) -> None:
        payload = json.dumps([list(obj) for obj in objects])
        _variables().set(self.key, payload, description=self.description)

    def clear(self) -> None:
        _variables().delete(self.key)


def _variables() -> Any:
    """Airflow's ``Variable``: the Task SDK's under a task runner (through its supervisor); the metadata
    DB's where a task runs in-process without one (Airflow 3.0's ``dag.test()``)."""
    if hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS"):
        from airflow.sdk import Variable

        return Variable
    from airflow.models import Variable as DbVariable

    return DbVariable
