"""``wait_until_archivable=True``: a refusal that time clears defers to a time trigger, then asks again.

Against the emulator over real HTTP. A deferral is resumed the way Airflow does it: a new operator (the
DAG file is parsed again) whose ``resume_execution`` gets the deferral's method and kwargs plus the
trigger's event. The emulator's clock moves the rejection window along; nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import (
    TolokaApiError,
    TolokaCascadeHeldBack,
    TolokaNotArchivableInTime,
)
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import (
    TolokaArchiveOperator,
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

HOUR = 3600.0
DAY = 86400.0


class TaskStateStore:
    """What ``ResumableJobMixin`` uses of Airflow's task state store; it outlives deferrals and tries."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


def new_context() -> dict[str, Any]:
    return {"ti": RecordingTI(), "task_state_store": TaskStateStore()}


def deferral(call: Callable[[], Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        call()
    return deferred.value


def resume(make: Callable[[], TolokaArchiveOperator], deferred: TaskDeferred, context: dict[str, Any]) -> Any:
    """What Airflow does when the trigger fires: the stored kwargs and the event, to a new operator."""
    kwargs = json.loads(json.dumps(deferred.kwargs))  # what survives the metadata DB
    event = deferred.trigger.moment  # DateTimeTrigger's event is the moment it waited for
    return make().resume_execution(deferred.method_name, {**kwargs, "event": event}, context)


def assert_checks_again(deferred: TaskDeferred, at: pendulum.DateTime, checks: int) -> None:
    assert deferred.method_name == "check_archivable_again"
    assert isinstance(deferred.trigger, DateTimeTrigger)
    assert abs((deferred.trigger.moment - at).total_seconds()) < 2
    assert deferred.kwargs["checks"] == checks


def archive_operations(emu) -> list[dict[str, Any]]:
    return [op for op in emu.operations() if op["type"].endswith(".ARCHIVE")]


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_project("1")
    return toloka_conn


def test_a_pool_in_its_rejection_window_is_archived_by_the_same_task_once_it_passes(emu):
    # The window ends one check interval from now: whether the next check comes from the interval or
    # from the date the emulator's refusal carries, it is in an hour.
    emu.add_pool(
        "10", project_id="1", status="CLOSED", last_rejection=emu.now - dt.timedelta(days=9, hours=-1)
    )

    def make() -> TolokaArchivePoolOperator:
        return TolokaArchivePoolOperator(
            task_id="p", pool_id="10", wait_until_archivable=True, archivable_check_interval=HOUR
        )

    context = new_context()
    started = pendulum.now("UTC")
    deferred = deferral(lambda: make().execute(context))
    assert_checks_again(deferred, started.add(hours=1), checks=1)
    assert emu.object("pool", "10")["status"] == "CLOSED"
    assert not archive_operations(emu)
    assert context["task_state_store"].values == {}  # not an operation the mixin should reconnect to

    emu.advance_clock(8 * DAY)
    result = resume(make, deferred, context)

    assert result["status"] == "SUCCESS"
    assert emu.object("pool", "10")["status"] == "ARCHIVED"
    [operation] = archive_operations(emu)
    assert context["ti"].pushed["operation_id"] == operation["id"] == result["id"]
    # Airflow 3.3+ keeps the operation id for a retry to reconnect to; below, the mixin is a stand-in.
    stored = {TolokaArchivePoolOperator.external_id_key: result["id"]} if AIRFLOW_V_3_3_PLUS else {}
    assert context["task_state_store"].values == stored


def test_each_check_logs_the_code_and_the_next_check_time(emu, capfd):
    emu.add_pool("10", project_id="1", status="CLOSED", last_rejection=emu.now - dt.timedelta(days=2))
    operator = TolokaArchivePoolOperator(task_id="p", pool_id="10", wait_until_archivable=True)
    deferred = deferral(lambda: operator.execute(new_context()))
    # Airflow's task logging goes through structlog to the console, not to caplog.
    [line] = [line for line in capfd.readouterr().out.splitlines() if "not archivable yet" in line]
    assert "THERE_IS_REJECTED_ASSIGNMENT" in line
    assert f"Next check at {deferred.trigger.moment.isoformat()}" in line


def test_a_training_waits_for_its_pools_across_checks(emu):
    emu.add_pool("10", project_id="1", status="CLOSED")
    emu.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=["10"])

    def make() -> TolokaArchiveTrainingOperator:
        return TolokaArchiveTrainingOperator(
            task_id="t", training_id="20", wait_until_archivable=True, archivable_check_interval=2 * HOUR
        )

    context = new_context()
    started = pendulum.now("UTC")
    first = deferral(lambda: make().execute(context))
    assert_checks_again(first, started.add(hours=2), checks=1)

    # The trigger fires; the pool is still not archived: the same wait goes on, one check later.
    again = pendulum.now("UTC")
    second = deferral(lambda: resume(make, first, context))
    assert_checks_again(second, again.add(hours=2), checks=2)
    assert second.kwargs["first_refused_at"] == first.kwargs["first_refused_at"]

    TolokaHook().wait_for_operation(TolokaHook().archive("pool", "10")["id"], poll_interval=0.05)
    result = resume(make, second, context)

    assert result["status"] == "SUCCESS"
    assert emu.object("training", "20")["status"] == "ARCHIVED"


async def test_a_project_waits_for_pools_archived_by_someone_else_then_waits_for_its_archive_deferred(emu):
    emu.add_pool("10", project_id="1", status="CLOSED")

    def make() -> TolokaArchiveProjectOperator:
        return TolokaArchiveProjectOperator(
            task_id="j", project_id="1", wait_until_archivable=True, deferrable=True, poll_interval=0.05
        )

    context = new_context()
    waiting = deferral(lambda: make().execute(context))
    assert waiting.method_name == "check_archivable_again"

    # Toloka's own auto-archive (or a colleague) archives the pool between two checks.
    TolokaHook().wait_for_operation(TolokaHook().archive("pool", "10")["id"], poll_interval=0.05)
    emu.operation_duration = 0.3
    archiving = deferral(lambda: resume(make, waiting, context))

    # Accepted: now the archive operation is waited for as always, by its own trigger and method.
    assert archiving.method_name == "execute_complete"
    assert isinstance(archiving.trigger, TolokaOperationTrigger)
    assert context["ti"].pushed["operation_id"] == archiving.trigger.serialize()[1]["operation_id"]
    [event] = [e.payload async for e in archiving.trigger.run()]
    result = make().resume_execution(archiving.method_name, {"event": event}, context)
    assert result["status"] == "SUCCESS"
    assert emu.object("project", "1")["status"] == "ARCHIVED"


def test_an_open_pool_fails_at_once(emu):
    emu.add_pool("10", project_id="1", status="OPEN")
    operator = TolokaArchivePoolOperator(task_id="p", pool_id="10", wait_until_archivable=True)
    with pytest.raises(TolokaApiError, match="INAPPROPRIATE_STATUS"):
        operator.execute(new_context())


@pytest.mark.parametrize("status", [403, 404])
def test_access_denied_and_unknown_ids_fail_at_once(emu, status):
    emu.add_pool("10", project_id="1", status="CLOSED", last_rejection=emu.now - dt.timedelta(days=2))
    if status == 403:
        emu.inject_fault("403", path="/pools/10/archive")
    pool_id = "10" if status == 403 else "999"
    operator = TolokaArchivePoolOperator(task_id="p", pool_id=pool_id, wait_until_archivable=True)
    with pytest.raises(TolokaApiError) as refused:
        operator.execute(new_context())
    assert refused.value.status_code == status


def test_without_wait_until_archivable_the_refusal_fails_the_task(emu):
    emu.add_pool("10", project_id="1", status="CLOSED", last_rejection=emu.now - dt.timedelta(days=2))
    with pytest.raises(TolokaApiError, match="THERE_IS_REJECTED_ASSIGNMENT"):
        TolokaArchivePoolOperator(task_id="p", pool_id="10").execute(new_context())


def test_past_archivable_timeout_the_task_fails_naming_the_code_and_both_times(emu):
    emu.add_pool("10", project_id="1", status="CLOSED")
    emu.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=["10"])

    def make() -> TolokaArchiveTrainingOperator:
        return TolokaArchiveTrainingOperator(
            task_id="t", training_id="20", wait_until_archivable=True, archivable_timeout=DAY
        )

    context = new_context()
    deferred = deferral(lambda: make().execute(context))
    # Airflow hands back what the task stored; as if the first refusal had been a day and a minute ago.
    first_refused_at = pendulum.now("UTC").subtract(days=1, minutes=1).isoformat()
    deferred.kwargs["first_refused_at"] = first_refused_at

    with pytest.raises(TolokaNotArchivableInTime) as late:
        resume(make, deferred, context)

    message = str(late.value)
    assert "TRAINING_ARCHIVE_CONFLICT" in message
    assert f"first at {first_refused_at}" in message
    assert late.value.last_check in message
    assert "archivable_timeout=86400 s" in message
    assert late.value.checks == 2
    assert not archive_operations(emu)


def test_the_last_check_comes_at_the_deadline(emu):
    emu.add_pool("10", project_id="1", status="CLOSED")
    emu.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=["10"])

    def make() -> TolokaArchiveTrainingOperator:
        return TolokaArchiveTrainingOperator(
            task_id="t", training_id="20", wait_until_archivable=True, archivable_timeout=7 * HOUR
        )

    context = new_context()
    deferred = deferral(lambda: make().execute(context))
    first = pendulum.now("UTC").subtract(hours=6)
    deferred.kwargs["first_refused_at"] = first.isoformat()
    last = deferral(lambda: resume(make, deferred, context))
    assert_checks_again(last, first.add(hours=7), checks=2)  # not after the 6-hour interval


def test_wait_until_archivable_needs_no_timeout(emu):
    emu.add_pool("10", project_id="1", status="CLOSED")
    emu.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=["10"])

    def make() -> TolokaArchiveTrainingOperator:
        return TolokaArchiveTrainingOperator(
            task_id="t", training_id="20", wait_until_archivable=True, archivable_timeout=None
        )

    context = new_context()
    deferred = deferral(lambda: make().execute(context))
    deferred.kwargs["first_refused_at"] = pendulum.now("UTC").subtract(days=400).isoformat()
    again = pendulum.now("UTC")
    assert_checks_again(deferral(lambda: resume(make, deferred, context)), again.add(hours=6), checks=2)


# -- the cascade -----------------------------------------------------------------------------------


def test_a_cascade_held_back_by_the_rejection_window_checks_again_and_finishes(emu, monkeypatch):
    """A stand-in for the cascade's first run: this branch's cascade cannot yet hold back (issue 14)."""
    import airflow_provider_toloka.cascade as cascade

    emu.add_pool("10", project_id="1", status="CLOSED")
    real_cascade = cascade.archive_project_cascade
    runs: list[str] = []

    def held_back_once(hook: TolokaHook, project_id: str, **kwargs: Any) -> dict[str, Any]:
        runs.append(project_id)
        if len(runs) == 1:
            summary = {"project": {"id": project_id, "status": "ACTIVE"}}
            raise TolokaCascadeHeldBack("pool 10 is in its window", summary, {"THERE_IS_REJECTED_ASSIGNMENT"})
        return real_cascade(hook, project_id, **kwargs)

    monkeypatch.setattr(cascade, "archive_project_cascade", held_back_once)

    def make(**kwargs: Any) -> TolokaArchiveProjectOperator:
        return TolokaArchiveProjectOperator(
            task_id="j", project_id="1", cascade=True, poll_interval=0.05, **kwargs
        )

    context = new_context()
    started = pendulum.now("UTC")
    deferred = deferral(lambda: make(wait_until_archivable=True).execute(context))
    assert_checks_again(deferred, started.add(hours=6), checks=1)

    summary = resume(lambda: make(wait_until_archivable=True), deferred, context)

    assert runs == ["1", "1"]
    assert emu.object("pool", "10")["status"] == "ARCHIVED"
    assert emu.object("project", "1")["status"] == "ARCHIVED"
    assert context["ti"].pushed["operation_id"] == summary["project"]["operation"]["id"]


def test_a_cascade_held_back_fails_without_wait_until_archivable(emu, monkeypatch):
    import airflow_provider_toloka.cascade as cascade

    def held_back(hook: TolokaHook, project_id: str, **kwargs: Any) -> dict[str, Any]:
        raise TolokaCascadeHeldBack("pool 10 is in its window", {}, {"THERE_IS_REJECTED_ASSIGNMENT"})

    monkeypatch.setattr(cascade, "archive_project_cascade", held_back)
    operator = TolokaArchiveProjectOperator(task_id="j", project_id="1", cascade=True)
    with pytest.raises(TolokaCascadeHeldBack):
        operator.execute(new_context())


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"archivable_check_interval": 59}, "archivable_check_interval=59 is not valid: pass at least 60"),
        ({"archivable_check_interval": 0}, "archivable_check_interval=0 is not valid"),
        ({"archivable_check_interval": float("nan")}, "archivable_check_interval=nan is not valid"),
        ({"archivable_check_interval": "6h"}, "archivable_check_interval='6h' is not valid"),
        (
            {"archivable_timeout": 0},
            "archivable_timeout=0 is not valid: pass a positive number of seconds or None",
        ),
        ({"archivable_timeout": -1.5}, "archivable_timeout=-1.5 is not valid"),
        ({"wait_until_archivable": "yes"}, "wait_until_archivable='yes' is not valid: pass True or False"),
    ],
)
def test_bad_parameters_are_refused_before_any_request(emu, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TolokaArchivePoolOperator(task_id="p", pool_id="10", **kwargs)
    assert not emu.requests


def test_defaults():
    operator = TolokaArchivePoolOperator(task_id="p", pool_id="10")
    assert operator.wait_until_archivable is False
    assert operator.archivable_check_interval == 21600
    assert operator.archivable_timeout == 864000
