"""The sensor's ``poke`` against the emulator over real HTTP."""

from __future__ import annotations

import time

import pytest

from airflow_provider_toloka.exceptions import TolokaOperationFailed
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor


class RecordingTI:
    """Stands in for the task instance: the sensor pushes its web-UI link through it."""

    def xcom_push(self, key: str, value: object) -> None:
        pass


def context() -> dict[str, object]:
    return {"ti": RecordingTI()}


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_project("1")
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


def test_not_done_until_success_then_returns_the_operation(emu):
    # Ten minutes of archive: the first poke finds it running on any machine; then the emulator's clock
    # moves past its end, with no wait.
    emu.operation_duration = 600
    sensor = TolokaOperationSensor(task_id="s", operation_id=start_archive(emu))
    assert sensor.poke(context()) is False
    emu.advance_clock(601)
    result = sensor.poke(context())
    assert result.is_done
    assert result.xcom_value["status"] == "SUCCESS"


def test_fail_raises_with_details(emu):
    emu.operation_duration = 0.1
    emu.fail_next("pool", "10", details={"reason": "broken"})
    sensor = TolokaOperationSensor(task_id="s", operation_id=start_archive(emu))
    wait_until_finished(emu)
    with pytest.raises(TolokaOperationFailed, match="broken"):
        sensor.poke(context())


@pytest.mark.parametrize("rendered", [None, "", "None"])
def test_no_operation_upstream_means_nothing_to_wait_for(emu, rendered):
    result = TolokaOperationSensor(task_id="s", operation_id=rendered).poke(context())
    assert result.is_done
    assert result.xcom_value is None
    assert emu.requests == []


def test_bad_operation_id_is_refused_before_any_request(emu):
    with pytest.raises(ValueError, match="operation_id='../x'"):
        TolokaOperationSensor(task_id="s", operation_id="../x").poke(context())
    assert emu.requests == []


def test_the_operation_id_and_the_connection_are_rendered_from_templates(emu, monkeypatch):
    from airflow.sdk import DAG

    operation_id = start_archive(emu)
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_OTHER", emu.airflow_conn_json())
    monkeypatch.delenv("AIRFLOW_CONN_TOLOKA_DEFAULT")
    params = {"operation_id": operation_id, "account": "other"}
    with DAG("templated", schedule=None, params=params):
        sensor = TolokaOperationSensor(
            task_id="s",
            operation_id="{{ params.operation_id }}",
            toloka_conn_id="toloka_{{ params.account }}",
        )
    emu.clear_requests()

    sensor.render_template_fields({"params": params})  # what Airflow does before poke
    sensor.poke(context())

    assert emu.requests[0].path == f"/api/v1/operations/{operation_id}"  # then the pool, for the link
