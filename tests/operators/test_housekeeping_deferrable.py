"""``TolokaHousekeepingOperator(deferrable=True)``: the worker validates and defers, the whole pass runs in
``TolokaHousekeepingTrigger`` (its ``run()`` iterated here against the emulator over real HTTP), and the
task resumes with the real event to record the same report as a run in the worker."""

from __future__ import annotations

import datetime as dt
import json

import pendulum
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from task_instance_stub import RecordingTI

from airflow_provider_toloka.assets import TOLOKA_ARCHIVE_ALIAS
from airflow_provider_toloka.exceptions import TolokaError, TolokaHousekeepingFailed
from airflow_provider_toloka.housekeeping import run as housekeeping_run
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
from airflow_provider_toloka.triggers.cascade import TolokaHousekeepingTrigger

DAY = 86400
IDLE = ["1", "2", "3"]  # two pools each (3 also a training linked to them)
OPEN = ["4"]  # an open pool
RECENT = ["5"]  # a pool closed today
REJECTED = ["6"]  # idle, but a pool had an assignment rejected yesterday


@pytest.fixture
def account(toloka_conn, monkeypatch):
    emu = toloka_conn
    emu.operation_duration = 0.1
    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(emu.now))
    start = emu.now
    for project_id in [*IDLE, *OPEN, *RECENT, *REJECTED]:
        emu.add_project(project_id)
        emu.add_pool(f"{project_id}00", project_id, status="CLOSED")
    for project_id in IDLE:
        emu.add_pool(f"{project_id}01", project_id, status="CLOSED")
    emu.add_training("309", "3", linked_pool_ids=["300", "301"])
    emu.add_pool("401", "4", status="OPEN")
    emu.advance_clock(40 * DAY)
    emu.add_pool("501", "5", status="CLOSED")
    emu.add_pool("601", "6", created=start, last_stopped=start, last_rejection=emu.now - dt.timedelta(days=1))
    return emu


def operator(**kwargs) -> TolokaHousekeepingOperator:
    return TolokaHousekeepingOperator(
        task_id="housekeeping", min_idle_days=30, poll_interval=0.2, deferrable=True, **kwargs
    )


def defer(task: TolokaHousekeepingOperator) -> TolokaHousekeepingTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({"ti": RecordingTI()})
    assert deferred.value.method_name == "execute_complete"
    assert isinstance(deferred.value.trigger, TolokaHousekeepingTrigger)
    return deferred.value.trigger


async def fire(trigger: TolokaHousekeepingTrigger) -> dict:
    [event] = [event.payload async for event in trigger.run()]
    return event


def resume(task: TolokaHousekeepingOperator, event: dict, ti: RecordingTI | None = None) -> tuple[dict, set]:
    events = OutletEventAccessors()
    summary = task.execute_complete({"ti": ti or RecordingTI(), "outlet_events": events}, event)
    alias_events = events[AssetAlias(TOLOKA_ARCHIVE_ALIAS)].asset_alias_events
    return summary, {f"{e.extra['kind']} {e.extra['id']}" for e in alias_events}


def posts(emu) -> list:
    return [r for r in emu.requests if r.method == "POST"]


def test_the_worker_defers_without_a_request_and_the_kwargs_hold_no_token(account):
    task = operator(
        project_ids=["1", "2"],
        max_projects=1,
        max_concurrency=4,
        close_open=True,
        execution_timeout=dt.timedelta(hours=2),
    )
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({"ti": RecordingTI()})
    trigger = deferred.value.trigger
    assert deferred.value.timeout == dt.timedelta(hours=2)  # execution_timeout bounds the deferred run

    assert account.requests == []
    _, kwargs = trigger.serialize()
    assert kwargs["project_ids"] == ["1", "2"]
    assert kwargs["max_projects"] == 1
    assert kwargs["max_concurrency"] == 4
    assert kwargs["close_open"] is True
    token = json.loads(account.airflow_conn_json())["password"]
    assert token not in json.dumps(kwargs)
    assert TolokaHousekeepingTrigger(**kwargs).serialize() == trigger.serialize()


def test_default_deferrable_from_the_config_defers(account):
    task = TolokaHousekeepingOperator(task_id="housekeeping")
    task.deferrable = True  # what [operators] default_deferrable=True gives as the default
    defer(task)


async def test_the_trigger_runs_the_pass_and_the_task_records_the_same_report(account):
    task = operator()
    event = await fire(defer(task))
    requests_before_resume = len(account.requests)

    summary, recorded = resume(task, event)

    assert len(account.requests) == requests_before_resume  # the worker only records
    assert summary["archived"] == IDLE
    assert list(summary["skipped"]["open"]) == OPEN
    assert list(summary["skipped"]["recent_activity"]) == RECENT
    assert list(summary["skipped"]["rejection_window"]) == REJECTED
    assert summary["counts"] == {"checked": 6, "archived": 3, "skipped": 3, "failed": 0}
    assert {account.object("project", p)["status"] for p in IDLE} == {"ARCHIVED"}
    expected = {f"project {p}" for p in IDLE} | {f"pool {p}0{n}" for p in IDLE for n in (0, 1)}
    expected |= {"training 309", "pool 600"}  # pool 600 of the held-back project is archived all the same
    assert recorded == expected


async def test_two_runs_at_once_start_one_operation_per_object(account):
    """After a triggerer restart the trigger may run twice: what one run started, the other waits on."""
    import asyncio

    account.operation_duration = 0.3
    trigger = defer(operator())
    twin = TolokaHousekeepingTrigger(**trigger.serialize()[1])

    events = await asyncio.gather(fire(trigger), fire(twin))

    assert [event["status"] for event in events] == ["done", "done"]
    assert {account.object("project", p)["status"] for p in IDLE} == {"ARCHIVED"}
    archived = [op["parameters"]["project_id"] for op in account.operations("PROJECT.ARCHIVE")]
    assert sorted(archived) == IDLE
    pools = [op["parameters"]["pool_id"] for op in account.operations("POOL.ARCHIVE")]
    assert len(pools) == len(set(pools))


async def test_a_dry_run_changes_nothing_deferred_either(account):
    task = operator(dry_run=True)
    summary, recorded = resume(task, await fire(defer(task)))

    assert summary["dry_run"] is True
    assert summary["archived"] == [*IDLE, *REJECTED]
    assert posts(account) == []
    assert recorded == set()


async def test_a_failed_project_fails_the_task_with_the_report_in_xcom(account):
    account.fail_next("pool", "200", details={"reason": "injected"})
    task = operator()
    event = await fire(defer(task))
    ti = RecordingTI()

    with pytest.raises(TolokaHousekeepingFailed, match="project 2") as caught:
        resume(task, event, ti)

    assert ti.pushed["return_value"] == caught.value.summary
    assert set(caught.value.summary["failed"]) == {"2"}
    assert {account.object("project", p)["status"] for p in ("1", "3")} == {"ARCHIVED"}


async def test_an_unknown_connection_fails_the_task_with_why(account):
    task = operator(toloka_conn_id="no_such_connection")
    with pytest.raises(TolokaError, match="no_such_connection"):
        resume(task, await fire(defer(task)))
    assert account.requests == []


@pytest.mark.parametrize("event", [None, {"status": "success"}, "done"])
def test_a_malformed_event_is_refused(event):
    with pytest.raises(TolokaError, match="TolokaHousekeepingTrigger"):
        operator().execute_complete({"ti": RecordingTI()}, event)
