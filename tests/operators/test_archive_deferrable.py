"""``deferrable=True`` on the archive operators: submit in the worker, wait in the trigger, resume."""

from __future__ import annotations

import time

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaError, TolokaOperationFailed, TolokaOperationTimeout
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator, TolokaArchiveProjectOperator
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    return toloka_conn


def archive_pool(**kwargs) -> TolokaArchivePoolOperator:
    return TolokaArchivePoolOperator(task_id="p", pool_id="10", deferrable=True, poll_interval=0.05, **kwargs)


def test_defers_to_the_trigger_after_pushing_the_operation_id(emu):
    emu.operation_duration = 60
    ti = RecordingTI()
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        archive_pool(timeout=600).execute({"ti": ti})
    trigger = deferred.value.trigger
    assert isinstance(trigger, TolokaOperationTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["operation_id"] == ti.pushed["operation_id"]
    assert kwargs["toloka_conn_id"] == "toloka_default"
    assert kwargs["poll_interval"] == 0.05
    assert before + 600 <= kwargs["end_time"] <= time.time() + 600
    # One archive request (then the web-UI link's read of the pool); no polling in the worker.
    assert [(r.method, r.status) for r in emu.requests if r.method == "POST"] == [("POST", 202)]
    assert not [r for r in emu.requests if r.path.startswith("/api/v1/operations")]


def test_without_timeout_the_trigger_waits_without_deadline(emu):
    emu.operation_duration = 60
    with pytest.raises(TaskDeferred) as deferred:
        archive_pool().execute({"ti": RecordingTI()})
    assert deferred.value.trigger.serialize()[1]["end_time"] is None


def test_already_archived_never_defers(emu):
    emu.add_pool("10", project_id="1", status="ARCHIVED")
    ti = RecordingTI()
    assert archive_pool().execute({"ti": ti}) is None
    assert "operation_id" not in ti.pushed


def test_an_operation_finished_on_submit_never_defers(emu):
    emu.operation_duration = 0
    assert archive_pool().execute({"ti": RecordingTI()})["status"] == "SUCCESS"


def test_wait_for_completion_false_never_defers(emu):
    emu.operation_duration = 60
    result = archive_pool(wait_for_completion=False).execute({"ti": RecordingTI()})
    assert result["status"] in ("PENDING", "RUNNING")


async def test_deferred_then_resumed_with_the_triggers_event(emu):
    emu.operation_duration = 0.3
    operator = archive_pool()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": RecordingTI()})
    [event] = [e.payload async for e in deferred.value.trigger.run()]
    result = operator.execute_complete({}, event)
    assert result["status"] == "SUCCESS"
    assert emu.object("pool", "10")["status"] == "ARCHIVED"


async def test_a_failed_operation_fails_the_task_with_its_details(emu):
    emu.fail_next("pool", "10", details={"reason": "pool is locked by a migration"})
    operator = archive_pool()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": RecordingTI()})
    [event] = [e.payload async for e in deferred.value.trigger.run()]
    with pytest.raises(TolokaOperationFailed, match="pool is locked by a migration"):
        operator.execute_complete({}, event)


def test_timeout_event_raises_the_operation_timeout():
    operator = TolokaArchiveProjectOperator(task_id="j", project_id="1", deferrable=True, timeout=30)
    running = {"id": "op-1", "type": "PROJECT.ARCHIVE", "status": "RUNNING", "progress": 40}
    event = {"status": "timeout", "operation_id": "op-1", "operation": running, "message": "late"}
    with pytest.raises(TolokaOperationTimeout, match="still RUNNING at 40% after 30 s"):
        operator.execute_complete({}, event)


def test_error_event_raises_with_the_triggers_message():
    operator = TolokaArchiveProjectOperator(task_id="j", project_id="1", deferrable=True)
    event = {"status": "error", "operation_id": "op-1", "operation": None, "message": "HTTP 401 nope"}
    with pytest.raises(TolokaError, match="op-1 failed: HTTP 401 nope"):
        operator.execute_complete({}, event)


@pytest.mark.parametrize("event", [None, "success", {"status": "done"}, {"status": "success"}])
def test_a_malformed_event_is_refused(event):
    operator = TolokaArchiveProjectOperator(task_id="j", project_id="1", deferrable=True)
    with pytest.raises(TolokaError):
        operator.execute_complete({}, event)


def test_not_deferrable_unless_asked():
    assert TolokaArchiveProjectOperator(task_id="j", project_id="1").deferrable is False
