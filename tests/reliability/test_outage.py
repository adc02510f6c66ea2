"""A Toloka outage in the middle of a wait, over real HTTP against the emulator.

Once an archive runs in Toloka, failing the task because Toloka did not answer for a while throws the
wait away (and with ``retries=0`` fails the DAG run) while the archive finishes anyway. So the waits
read through transient faults (5xx, dropped connections, 429) far past the hook's retry budget, until
their own deadline, and log the outage once when it begins and once when it ends. A refusal still
fails at once. The connection allows one retry per request (``max_retries=1``), so every outage here
is many times the budget that used to end the wait.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk import PokeReturnValue
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaApiError, TolokaOperationTimeout
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

MAX_RETRIES = 1
OUTAGE_READS = 20  # consecutive failed reads: ten times the budget of one request
BEGAN = "Toloka cannot be read for operation"
ENDED = "Toloka answers again for operation"


@pytest.fixture
def emu(toloka_emulator, monkeypatch):
    """A closed pool 10, and ``toloka_default`` allowing one retry per request."""
    conn = json.loads(toloka_emulator.airflow_conn_json())
    conn["extra"].update(max_retries=MAX_RETRIES)
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))
    toloka_emulator.add_project("1")
    toloka_emulator.add_pool("10", project_id="1", status="CLOSED")
    return toloka_emulator


def fast(operator):
    """Millisecond back-off: the outage is counted in failed reads, not in seconds."""
    operator.hook.retry_min_wait, operator.hook.retry_max_wait = 0.01, 0.05
    return operator


def failed_reads(emu) -> list[int]:
    return [r.status for r in emu.requests if r.path.startswith("/api/v1/operations/") and r.status != 200]


@pytest.mark.parametrize(
    ("fault", "status"),
    [("503", 503), ("500", 500), ("drop", 0)],
)
def test_sync_archive_rides_out_an_outage_past_the_retry_budget(emu, capfd, fault, status):
    emu.inject_fault(fault, count=OUTAGE_READS, path="/operations/", method="GET")
    operator = fast(TolokaArchivePoolOperator(task_id="archive", pool_id="10", poll_interval=0.05))

    result = operator.execute({"ti": RecordingTI()})

    assert result["status"] == "SUCCESS"
    assert emu.object("pool", "10")["status"] == "ARCHIVED"
    assert failed_reads(emu) == [status] * OUTAGE_READS
    assert [r.method for r in emu.requests if "/archive" in r.path] == ["POST"]
    output = capfd.readouterr().out
    # Once when it begins and once when it ends, not a line per failed read.
    assert output.count(BEGAN) == 1
    assert output.count(ENDED) == 1
    assert f"{OUTAGE_READS} failed attempts" in output


def test_429_during_the_wait_is_waited_out_past_the_budget(emu):
    emu.inject_fault("429", count=3, path="/operations/", method="GET", retry_after=1)
    hook = TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05)
    operation = hook.archive_pool("10")

    finished = hook.wait_for_operation(operation["id"], poll_interval=0.05)

    assert finished["status"] == "SUCCESS"
    assert failed_reads(emu) == [429, 429, 429]


def test_a_refusal_during_the_wait_fails_at_once(emu):
    emu.inject_fault("403", count=1, path="/operations/", method="GET")
    operator = fast(TolokaArchivePoolOperator(task_id="archive", pool_id="10", poll_interval=0.05))

    with pytest.raises(TolokaApiError, match="HTTP 403"):
        operator.execute({"ti": RecordingTI()})

    reads = [r.status for r in emu.requests if r.path.startswith("/api/v1/operations/")]
    assert reads == [403]


def test_an_outage_outlasting_the_timeout_ends_the_wait_with_the_timeout(emu):
    emu.inject_fault("503", count=100_000, path="/operations/", method="GET")
    hook = TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05)
    operation = hook.archive_pool("10")

    with pytest.raises(TolokaOperationTimeout) as caught:
        hook.wait_for_operation(operation["id"], poll_interval=0.05, timeout=0.5)

    assert isinstance(caught.value.__cause__, TolokaApiError)
    assert caught.value.__cause__.status_code == 503
    assert len(failed_reads(emu)) > MAX_RETRIES + 1


def test_sensor_pokes_through_an_outage_and_succeeds_after_it(emu, capfd):
    emu.operation_duration = 0.05
    operation = TolokaHook().archive_pool("10")
    sensor = fast(TolokaOperationSensor(task_id="wait", operation_id=operation["id"], poke_interval=0.05))
    emu.inject_fault("503", count=100_000, path="/operations/", method="GET")

    # Each poke's read fails past the hook's budget (two attempts): not done yet, rather than a failed task.
    assert [sensor.poke({"ti": RecordingTI()}) for _ in range(3)] == [False, False, False]
    assert len(failed_reads(emu)) == 3 * (MAX_RETRIES + 1)

    emu.clear_faults()
    emu.advance_clock(1)  # the archive has ended meanwhile, however fast the pokes were
    done = sensor.poke({"ti": RecordingTI()})

    assert isinstance(done, PokeReturnValue)
    assert done.is_done
    assert done.xcom_value["status"] == "SUCCESS"
    output = capfd.readouterr().out
    assert output.count(BEGAN) == 1
    assert output.count(ENDED) == 1


def test_sensor_fails_at_once_on_a_refusal(emu):
    operation = TolokaHook().archive_pool("10")
    sensor = fast(TolokaOperationSensor(task_id="wait", operation_id=operation["id"], poke_interval=0.05))
    emu.inject_fault("403", count=1, path="/operations/", method="GET")

    with pytest.raises(TolokaApiError, match="HTTP 403"):
        sensor.poke({"ti": RecordingTI()})
