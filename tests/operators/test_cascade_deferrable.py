"""``TolokaArchiveProjectOperator(cascade=True, deferrable=True)``: validate in the worker, carry out the
cascade in ``TolokaCascadeTrigger`` (its ``run()`` iterated here as the triggerer does, against the emulator
over real HTTP), resume with the real event."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import json
import threading

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from task_instance_stub import RecordingTI

from airflow_provider_toloka.assets import TOLOKA_ARCHIVE_ALIAS
from airflow_provider_toloka.exceptions import (
    TolokaCascadeBlocked,
    TolokaCascadeFailed,
    TolokaCascadeHeldBack,
    TolokaError,
)
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator, TolokaArchiveProjectOperator
from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger

POOLS = [str(100 + i) for i in range(40)]
TRAININGS = {"900": POOLS[:10], "901": POOLS[10:25], "902": []}
OBJECTS = len(POOLS) + len(TRAININGS) + 1


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.operation_duration = 0.1
    toloka_conn.add_project("7")
    for pool_id in POOLS:
        toloka_conn.add_pool(pool_id, project_id="7")
    for training_id, linked in TRAININGS.items():
        toloka_conn.add_training(training_id, project_id="7", linked_pool_ids=linked)
    return toloka_conn


def operator(**kwargs) -> TolokaArchiveProjectOperator:
    return TolokaArchiveProjectOperator(
        task_id="archive", project_id="7", cascade=True, deferrable=True, poll_interval=0.2, **kwargs
    )


def defer(task: TolokaArchiveProjectOperator) -> TolokaCascadeTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({"ti": RecordingTI()})
    assert deferred.value.method_name == "cascade_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, TolokaCascadeTrigger)
    return trigger


async def fire(trigger: TolokaCascadeTrigger) -> dict:
    [event] = [event.payload async for event in trigger.run()]
    return event


def resume(task: TolokaArchiveProjectOperator, event: dict) -> tuple[dict, RecordingTI, dict]:
    ti, events = RecordingTI(), OutletEventAccessors()
    summary = task.cascade_complete({"ti": ti, "outlet_events": events}, event)
    recorded = {
        e.extra["kind"] + " " + e.extra["id"]
        for e in events[AssetAlias(TOLOKA_ARCHIVE_ALIAS)].asset_alias_events
    }
    return summary, ti, {"recorded": recorded}


def posts(emu) -> list:
    return [r for r in emu.requests if r.method == "POST"]


def one_operation_per_object(emu) -> None:
    for op_type, field, expected in (
        ("POOL.ARCHIVE", "pool_id", POOLS),
        ("TRAINING.ARCHIVE", "training_id", list(TRAININGS)),
        ("PROJECT.ARCHIVE", "project_id", ["7"]),
    ):
        assert sorted(op["parameters"][field] for op in emu.operations(op_type)) == sorted(expected)


def test_the_worker_defers_without_a_request_and_the_kwargs_hold_no_token(emu):
    task = operator(timeout=600, close_open=True, max_concurrency=16, execution_timeout=dt.timedelta(hours=2))
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({"ti": RecordingTI()})
    trigger = deferred.value.trigger
    assert deferred.value.timeout == dt.timedelta(hours=2)  # execution_timeout bounds the deferred run

    assert emu.requests == []
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_toloka.triggers.cascade.TolokaCascadeTrigger"
    assert kwargs["project_id"] == "7"
    assert kwargs["close_open"] is True
    assert kwargs["max_concurrency"] == 16
    assert kwargs["timeout"] == 600
    assert kwargs["end_time"] is not None
    token = json.loads(emu.airflow_conn_json())["password"]
    assert token not in json.dumps(kwargs)
    assert TolokaCascadeTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_the_deferrable_page_builds_the_tasks_it_shows():
    from airflow.sdk import DAG

    from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
    from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

    with DAG("deferrable_page", schedule=None) as dag:
        # [START deferrable_per_task]
        TolokaArchivePoolOperator(task_id="archive_pool", pool_id="2101", deferrable=True, timeout=3600)
        TolokaOperationSensor(task_id="wait", operation_id="...", deferrable=True, poke_interval=30)
        TolokaArchiveProjectOperator(task_id="archive_all", project_id="1003", cascade=True, deferrable=True)
        TolokaHousekeepingOperator(task_id="housekeeping", min_idle_days=30, deferrable=True)
        # [END deferrable_per_task]
    assert {task.task_id: task.deferrable for task in dag.tasks} == dict.fromkeys(
        ["archive_pool", "wait", "archive_all", "housekeeping"], True
    )


def test_default_deferrable_from_the_config_defers_the_cascade(emu):
    task = TolokaArchiveProjectOperator(task_id="archive", project_id="7", cascade=True)
    task.deferrable = True  # what [operators] default_deferrable=True gives as the default
    defer(task)


async def test_the_trigger_carries_out_the_cascade_and_the_task_records_it(emu):
    task = operator(max_concurrency=8)
    event = await fire(defer(task))
    requests_before_resume = len(emu.requests)

    summary, ti, seen = resume(task, event)

    assert len(emu.requests) == requests_before_resume  # the worker only records
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    assert {emu.object("pool", p)["status"] for p in POOLS} == {"ARCHIVED"}
    assert sorted(summary["pools"]["archived"]) == sorted(POOLS)
    assert sorted(summary["trainings"]["archived"]) == sorted(TRAININGS)
    assert ti.pushed == {"operation_id": summary["project"]["operation"]["id"]}
    assert len(seen["recorded"]) == OBJECTS
    one_operation_per_object(emu)


async def test_a_dry_run_changes_nothing_deferred_either(emu):
    task = operator(dry_run=True)
    summary, ti, seen = resume(task, await fire(defer(task)))

    assert summary["dry_run"] is True
    assert sorted(summary["plan"]["archive"]["pools"]) == sorted(POOLS)
    assert posts(emu) == []
    assert seen["recorded"] == set()
    assert ti.pushed == {}


async def test_blocked_fails_as_in_the_worker_and_changes_nothing(emu):
    emu.add_pool("105", project_id="7", status="OPEN")
    task = operator()
    with pytest.raises(
        TolokaCascadeBlocked, match=r"pool 105 \(OPEN\): open: close it, or pass close_open=True"
    ):
        resume(task, await fire(defer(task)))
    assert posts(emu) == []


async def test_held_back_raises_the_same_error_with_its_summary(emu):
    emu.add_pool("110", project_id="7", last_rejection=emu.now - dt.timedelta(days=2))
    task = operator(max_concurrency=8)
    event = await fire(defer(task))
    with pytest.raises(TolokaCascadeHeldBack) as caught:
        resume(task, event)

    assert caught.value.codes == {"THERE_IS_REJECTED_ASSIGNMENT"}
    assert "left with it: training 901 and project 7" in str(caught.value)
    assert caught.value.summary["not_archived"] == {"pools": ["110"], "trainings": ["901"], "project": ["7"]}
    assert emu.object("project", "7")["status"] == "ACTIVE"


async def test_held_back_with_wait_until_archivable_checks_again_and_keeps_the_wait(emu):
    emu.add_pool("110", project_id="7", last_rejection=emu.now - dt.timedelta(days=2))
    task = operator(max_concurrency=8, wait_until_archivable=True)
    event = await fire(defer(task))
    with pytest.raises(TaskDeferred) as first_check:
        task.cascade_complete({"ti": RecordingTI()}, event)
    assert first_check.value.method_name == "check_archivable_again"
    wait = first_check.value.kwargs
    assert wait["checks"] == 1

    # The next check defers the cascade anew, carrying the wait; held back again, the wait goes on.
    with pytest.raises(TaskDeferred) as cascade_again:
        task.check_archivable_again({"ti": RecordingTI()}, None, **wait)
    assert cascade_again.value.method_name == "cascade_complete"
    assert cascade_again.value.kwargs == wait
    event = await fire(cascade_again.value.trigger)
    with pytest.raises(TaskDeferred) as second_check:
        task.cascade_complete({"ti": RecordingTI()}, event, **cascade_again.value.kwargs)
    assert second_check.value.kwargs == {"first_refused_at": wait["first_refused_at"], "checks": 2}

    emu.advance_clock(dt.timedelta(days=9).total_seconds())
    with pytest.raises(TaskDeferred) as cascade_last:
        task.check_archivable_again({"ti": RecordingTI()}, None, **second_check.value.kwargs)
    summary, _, _ = resume(task, await fire(cascade_last.value.trigger))
    assert summary["pools"]["archived"] == ["110"]
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    one_operation_per_object(emu)


async def test_a_failed_operation_fails_the_task(emu):
    emu.fail_next("pool", "130", details={"reason": "injected"})
    task = operator(max_concurrency=8)
    with pytest.raises(TolokaCascadeFailed, match="injected") as caught:
        resume(task, await fire(defer(task)))
    assert not isinstance(caught.value, TolokaCascadeHeldBack)


async def test_the_timeout_counts_from_the_deferral(emu):
    emu.operation_duration = 30
    task = operator(timeout=0.5)
    with pytest.raises(TolokaCascadeFailed, match=r"did not finish within timeout=0.5 s") as caught:
        resume(task, await fire(defer(task)))
    assert "Not archived: pools 40 (" in str(caught.value)


async def test_an_unknown_connection_is_an_error_event(emu):
    task = operator(toloka_conn_id="no_such_connection")
    with pytest.raises(TolokaError, match="no_such_connection"):
        resume(task, await fire(defer(task)))
    assert emu.requests == []


async def test_two_runs_at_once_and_a_restart_start_one_operation_per_object(emu):
    """After a triggerer restart the trigger may run twice: each lists again, skips what is archived, and
    waits on what the other started (409) instead of starting a second operation."""
    emu.operation_duration = 0.3
    task = operator(max_concurrency=8)
    trigger = defer(task)
    again = TolokaCascadeTrigger(**trigger.serialize()[1])  # as another triggerer recreates it

    first, second = await asyncio.gather(fire(trigger), fire(again))

    assert first["status"] == second["status"] == "success"
    one_operation_per_object(emu)
    assert any(r.status == 409 for r in posts(emu)), "one run met the other's running operations"
    third, _, _ = resume(task, await fire(TolokaCascadeTrigger(**trigger.serialize()[1])))
    assert sorted(third["pools"]["skipped"]) == sorted(POOLS)  # a later run finds it all archived
    one_operation_per_object(emu)


async def test_a_killed_task_stops_its_cascade_before_on_kill_returns(emu):
    emu.operation_duration = 0.5
    trigger = defer(operator(max_concurrency=1))
    running = asyncio.ensure_future(fire(trigger))
    while not posts(emu):  # counted, not timed: the first archive went out
        await asyncio.sleep(0.01)

    running.cancel()  # what the triggerer does first, then (Airflow 3.3+, a user's kill) on_kill
    with pytest.raises(asyncio.CancelledError):
        await running
    await trigger.on_kill()
    sent = len(posts(emu))

    for thread in [t for t in threading.enumerate() if t.name == "TolokaCascadeTrigger"]:
        thread.join(timeout=30)  # it settled its outcome before on_kill returned: it is on its way out
        assert not thread.is_alive()
    assert len(posts(emu)) == sent, "nothing went out after on_kill returned"
    assert sent < len(POOLS), "no further archive went out once cancelled"
    assert emu.object("project", "7")["status"] == "ACTIVE"


async def test_a_trigger_recreated_after_its_triggerer_died_finishes_the_job(emu):
    """A triggerer stopped mid-cascade (its archives still running in Toloka); the trigger, recreated from
    its kwargs on another triggerer, lists again, waits on what runs, archives the rest: once each."""
    emu.operation_duration = 2
    task = operator(max_concurrency=8)
    trigger = defer(task)
    running = asyncio.ensure_future(fire(trigger))
    while len(posts(emu)) < 8:  # counted: eight archives are out, their operations running
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await trigger.on_kill()  # here only to know the old engine is done sending
    emu.operation_duration = 0.1

    summary, _, seen = resume(task, await fire(TolokaCascadeTrigger(**trigger.serialize()[1])))

    assert emu.object("project", "7")["status"] == "ARCHIVED"
    assert sorted(summary["pools"]["archived"] + summary["pools"]["skipped"]) == sorted(POOLS)
    assert len(seen["recorded"]) == OBJECTS
    one_operation_per_object(emu)


TRIGGER_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("trigger_id", default=None)


class ContextLog:
    """A stand-in for the trigger's logger: each line with the context it was logged in."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int | None]] = []

    def info(self, event: str, *args: object, **kwargs: object) -> None:
        self.lines.append((event % args if args else event, TRIGGER_ID.get()))

    warning = info


async def test_the_engines_log_lines_keep_the_triggers_context(emu):
    """Airflow's triggerer routes a line to the task's log by the context it is logged in (``trigger_id``):
    the engine's threads, the steps' included, log in the trigger's context."""
    trigger = defer(operator(max_concurrency=8))
    trigger._log = log = ContextLog()

    async def run_as_the_triggerer() -> dict:
        TRIGGER_ID.set(42)
        return await fire(trigger)

    assert (await asyncio.ensure_future(run_as_the_triggerer()))["status"] == "success"
    submitted = [context for line, context in log.lines if line.startswith("Archive of project 7 submitted")]
    assert submitted == [42]  # logged from a step's thread
    assert {context for _, context in log.lines} == {42}
