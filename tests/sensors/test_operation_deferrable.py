"""``TolokaOperationSensor(deferrable=True)``: one check in the worker, then the trigger."""

from __future__ import annotations

import time

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException, TaskDeferred
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaOperationFailed
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger


def context() -> dict[str, object]:
    return {"ti": RecordingTI()}


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    return toloka_conn


def start_archive(emu) -> str:
    from airflow_provider_toloka.hooks.toloka import TolokaHook

    return TolokaHook().archive_pool("10")["id"]


def wait_until_finished(emu) -> None:
    """Wait on the emulator, not on a clock: until the archive operation has ended."""
    for _ in range(3000):
        if emu.operations(type="POOL.ARCHIVE")[0]["status"] in ("SUCCESS", "FAIL"):
            return
        time.sleep(0.01)
    raise AssertionError(f"the archive never ended: {emu.operations(type='POOL.ARCHIVE')}")


def sensor(operation_id, **kwargs) -> TolokaOperationSensor:
    return TolokaOperationSensor(task_id="s", operation_id=operation_id, deferrable=True, **kwargs)


def test_defers_with_poke_interval_and_the_sensors_timeout(emu):
    emu.operation_duration = 60
    operation_id = start_archive(emu)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(operation_id, poke_interval=7, timeout=120).execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, TolokaOperationTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["operation_id"] == operation_id
    assert kwargs["poll_interval"] == 7
    assert before + 120 <= kwargs["end_time"] <= time.time() + 120


def test_a_finished_operation_returns_at_once(emu):
    operation_id = start_archive(emu)
    wait_until_finished(emu)
    assert sensor(operation_id).execute(context())["status"] == "SUCCESS"


def test_no_operation_upstream_returns_none_without_deferring(emu):
    assert sensor(None).execute(context()) is None
    assert emu.requests == []


async def test_resumes_with_the_operation(stopped_clock_conn):
    # The emulator's clock is stopped: the archive still runs at the first poke, however slow the machine.
    emu = stopped_clock_conn
    emu.add_pool("10", project_id="1", status="CLOSED")
    task = sensor(start_archive(emu), poke_interval=0.05)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context())
    emu.advance_clock(1)  # the archive ends; the trigger's first read finds it done
    [event] = [e.payload async for e in deferred.value.trigger.run()]
    assert task.execute_complete(context(), event)["status"] == "SUCCESS"


def test_failed_event_raises_with_details():
    failed = {"id": "op-1", "type": "POOL.ARCHIVE", "status": "FAIL", "details": {"reason": "broken"}}
    event = {"status": "failed", "operation_id": "op-1", "operation": failed, "message": "FAIL"}
    with pytest.raises(TolokaOperationFailed, match="broken"):
        sensor("op-1").execute_complete({}, event)


def test_timeout_is_a_sensor_timeout_so_soft_fail_skips():
    event = {"status": "timeout", "operation_id": "op-1", "operation": None, "message": "not finished"}
    with pytest.raises(AirflowSensorTimeout, match="not finished"):
        sensor("op-1").execute_complete({}, event)
    soft = sensor("op-1", soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": event}, {})


def test_a_zero_poke_interval_is_refused_when_deferrable():
    with pytest.raises(ValueError, match="poke_interval=0.0"):
        sensor("op-1", poke_interval=0)
