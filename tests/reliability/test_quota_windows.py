"""What each kind of Toloka 429 does, over real HTTP to the emulator (``inject_fault("429", quota=...)``).

| 429 | what the provider does |
| --- | --- |
| no quota named (the per-second limit) | waited out and retried, ``Retry-After`` first |
| ``MIN`` quota | waited out and retried: ``Retry-After``, else the whole minute |
| ``HOUR`` / ``DAY`` quota | ``TolokaQuotaExhausted`` at once, naming the quota and when it resets; |
| | with ``wait_out_quota=True`` waited out when that fits the task's deadline |

No test sits out a wait: the hook's ``sleep`` is swapped for one that records the seconds asked for, and
requests are counted in the emulator's log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaCascadeFailed, TolokaQuotaExhausted
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator, TolokaArchiveProjectOperator
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

HOUR = 3600.0
DAY = 86400.0


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.operation_duration = 0.05
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    return toloka_conn


def recording_hook(**kwargs) -> tuple[TolokaHook, list[float]]:
    hook = TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05, **kwargs)
    slept: list[float] = []
    hook.sleep = slept.append
    return hook, slept


def statuses(emu) -> list[int]:
    return [record.status for record in emu.requests]


def test_the_per_second_limit_is_waited_out_as_before(emu):
    emu.inject_fault("429", retry_after=2)
    hook, slept = recording_hook()
    assert hook.get_pool("10")["id"] == "10"
    assert statuses(emu) == [429, 200]
    assert len(slept) == 1
    assert 2 <= slept[0] <= 2.3, "Retry-After first"


def test_a_minute_quota_without_retry_after_waits_the_whole_minute(emu):
    emu.inject_fault("429", quota="MIN")
    hook, slept = recording_hook()
    assert hook.get_pool("10")["id"] == "10"
    assert statuses(emu) == [429, 200]
    assert len(slept) == 1
    # A minute plus the Retry-After jitter (up to 10 % + 50 ms), not the 0.01 s back-off: every retry
    # would fall inside the window.
    assert 60 <= slept[0] <= 60 * 1.1 + 0.05


def test_a_minute_quota_with_retry_after_waits_that(emu):
    emu.inject_fault("429", quota="MIN", retry_after=5)
    hook, slept = recording_hook()
    hook.get_pool("10")
    assert statuses(emu) == [429, 200]
    assert 5 <= slept[0] <= 5.6


@pytest.mark.parametrize(("quota", "window"), [("HOUR", HOUR), ("DAY", DAY)])
def test_an_hour_or_day_quota_fails_at_once_naming_it_and_when_it_resets(emu, quota, window):
    emu.inject_fault("429", quota=quota, count=10)
    hook, slept = recording_hook()
    before = dt.datetime.now(dt.UTC)
    with pytest.raises(TolokaQuotaExhausted) as exhausted:
        hook.archive_pool("10")
    error = exhausted.value
    assert statuses(emu) == [429], "not retried: five retries seconds apart cannot outlast it"
    assert slept == []
    assert (error.status_code, error.quota, error.resets_in) == (429, quota, window)
    assert before + dt.timedelta(seconds=window) <= error.resets_at
    text = str(error)
    assert f"{quota} quota" in text
    assert f"resets by {error.resets_at:%Y-%m-%dT%H:%M:%SZ}" in text
    assert "wait_out_quota=True" in text


def test_a_retry_after_on_a_long_quota_is_when_it_resets_uncapped(emu):
    emu.inject_fault("429", quota="DAY", retry_after=7200)
    hook, _ = recording_hook()
    with pytest.raises(TolokaQuotaExhausted) as exhausted:
        hook.get_pool("10")
    assert exhausted.value.resets_in == 7200, "not the 5-minute cap of ordinary Retry-After waits"


def test_wait_out_quota_waits_when_the_reset_fits_the_deadline(emu):
    emu.inject_fault("429", quota="HOUR")
    hook, slept = recording_hook(wait_out_quota=True, deadline=_in(2 * HOUR))
    operation = hook.archive_pool("10")
    assert operation["type"] == "POOL.ARCHIVE"
    assert statuses(emu) == [429, 202]
    assert len(slept) == 1
    assert HOUR <= slept[0] <= HOUR + 1


def test_wait_out_quota_fails_at_once_when_the_reset_is_past_the_deadline(emu, caplog, capfd):
    emu.inject_fault("429", quota="HOUR", count=10)
    hook, slept = recording_hook(wait_out_quota=True, deadline=_in(HOUR / 2))
    with caplog.at_level(logging.WARNING), pytest.raises(TolokaQuotaExhausted):
        hook.archive_pool("10")
    assert statuses(emu) == [429]
    assert slept == []
    assert "after the task's deadline: not waiting" in caplog.text + "".join(capfd.readouterr())


def _in(seconds: float) -> float:
    import time

    return time.time() + seconds


def run_pool_operator(**kwargs) -> tuple[TolokaArchivePoolOperator, list[float]]:
    operator = TolokaArchivePoolOperator(task_id="a", pool_id="10", poll_interval=0.1, **kwargs)
    slept: list[float] = []
    operator.hook.sleep = slept.append
    operator.execute({"ti": RecordingTI()})
    return operator, slept


def test_the_operator_fails_at_once_by_default(emu):
    emu.inject_fault("429", quota="HOUR", count=10)
    with pytest.raises(TolokaQuotaExhausted, match="HOUR quota"):
        run_pool_operator(execution_timeout=dt.timedelta(days=2))
    assert statuses(emu) == [429]


def test_the_operator_waits_it_out_within_its_execution_timeout(emu):
    emu.inject_fault("429", quota="HOUR", path="/archive")
    _, slept = run_pool_operator(wait_out_quota=True, execution_timeout=dt.timedelta(hours=2))
    assert emu.object("pool", "10")["status"] == "ARCHIVED"
    assert [r.status for r in emu.requests if r.method == "POST"] == [429, 202]
    assert HOUR <= slept[0] <= HOUR + 1


@pytest.mark.parametrize(
    "limits",
    [{"execution_timeout": dt.timedelta(minutes=30)}, {"timeout": 600, "execution_timeout": None}],
)
def test_the_operator_does_not_wait_past_its_own_deadline(emu, limits):
    emu.inject_fault("429", quota="HOUR", count=10)
    with pytest.raises(TolokaQuotaExhausted):
        run_pool_operator(wait_out_quota=True, **limits)
    assert statuses(emu) == [429]


def test_a_long_quota_in_a_cascade_neither_pauses_the_others_nor_is_retried(emu):
    for pool_id in ("20", "21", "22", "23"):
        emu.add_pool(pool_id, project_id="1", status="CLOSED")
    emu.inject_fault("429", quota="DAY", path="/pools/21/archive", count=10)
    operator = TolokaArchiveProjectOperator(
        task_id="c", project_id="1", cascade=True, poll_interval=0.1, max_concurrency=4
    )
    with pytest.raises(TolokaCascadeFailed, match="DAY quota") as failed:
        operator.execute({"ti": RecordingTI()})
    assert "21" in str(failed.value)
    assert [r.status for r in emu.requests if r.path.endswith("/pools/21/archive")] == [429]
    assert operator.hook.throttle.refusals == 0, "a day quota says nothing about the pace"
    assert operator.hook.throttle.rate is None


def test_the_sensor_and_housekeeping_take_wait_out_quota_and_refuse_a_non_bool(emu):
    for make in (
        lambda value: TolokaOperationSensor(task_id="s", operation_id="x", wait_out_quota=value),
        lambda value: TolokaHousekeepingOperator(task_id="h", wait_out_quota=value),
        lambda value: TolokaArchivePoolOperator(task_id="a", pool_id="10", wait_out_quota=value),
    ):
        assert make(True).hook.wait_out_quota is True
        with pytest.raises(ValueError, match=r"wait_out_quota='yes' is not valid: pass True"):
            make("yes")
    assert emu.requests == []


async def test_the_triggerers_reader_ends_the_wait_at_once_instead_of_riding_it_out(emu):
    emu.operation_duration = 30
    operation = TolokaHook().archive_pool("10")
    emu.clear_requests()
    emu.inject_fault("429", quota="HOUR", path=f"/operations/{operation['id']}", count=100)
    trigger = TolokaOperationTrigger(operation["id"], poll_interval=0.1, end_time=_in(2 * DAY))
    [event] = await asyncio.wait_for(_events(trigger), timeout=60)
    assert event["status"] == "error"
    assert "HOUR quota" in event["message"]
    assert statuses(emu) == [429], "one read, not an outage retried until the deadline"


async def _events(trigger: TolokaOperationTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def test_a_wait_on_an_operation_fails_at_once_or_waits_it_out_within_both_deadlines(emu):
    emu.operation_duration = 30
    operation = TolokaHook().archive_pool("10")
    path = f"/operations/{operation['id']}"

    emu.clear_requests()
    emu.inject_fault("429", quota="HOUR", path=path, count=1)
    hook, slept = recording_hook()
    with pytest.raises(TolokaQuotaExhausted):
        hook.wait_for_operation(operation["id"], poll_interval=1)
    assert (statuses(emu), slept) == ([429], [])

    emu.clear_requests()
    emu.inject_fault("429", quota="HOUR", path=path, count=1)
    hook, slept = recording_hook(wait_out_quota=True, deadline=_in(DAY))
    with pytest.raises(TolokaQuotaExhausted):  # its own timeout is shorter than the reset
        hook.wait_for_operation(operation["id"], poll_interval=1, timeout=600)
    assert (statuses(emu), slept) == ([429], [])

    emu.clear_requests()
    emu.inject_fault("429", quota="HOUR", path=path, count=1)
    hook, slept = recording_hook(wait_out_quota=True, deadline=_in(DAY))
    hook.sleep = lambda seconds: (slept.append(seconds), emu.advance_clock(seconds))
    final = hook.wait_for_operation(operation["id"], poll_interval=1, timeout=2 * HOUR)
    assert final["status"] == "SUCCESS"
    assert statuses(emu) == [429, 200]
    assert slept == [HOUR]


class RescheduledTI(RecordingTI):
    """A later poke of a reschedule-mode sensor: Airflow tells it when its first poke started."""

    def __init__(self, first_poke: dt.datetime | None) -> None:
        super().__init__()
        self.first_poke = first_poke

    def get_first_reschedule_date(self, context) -> dt.datetime | None:
        return self.first_poke


@pytest.mark.parametrize(("first_poke_ago", "waits"), [(None, True), (50 * 60, False)])
def test_a_rescheduled_sensor_counts_its_deadline_from_its_first_poke(emu, first_poke_ago, waits):
    """timeout=1 h, an HOUR quota: the first poke may wait it out; a poke 50 minutes after the first may
    not, since Airflow times the sensor out 10 minutes from then."""
    emu.operation_duration = 30
    operation = TolokaHook().archive_pool("10")
    emu.clear_requests()
    emu.inject_fault("429", quota="HOUR", path=f"/operations/{operation['id']}", retry_after=HOUR / 2)
    sensor = TolokaOperationSensor(
        task_id="s",
        operation_id=operation["id"],
        mode="reschedule",
        timeout=HOUR,
        poke_interval=60,
        wait_out_quota=True,
    )
    slept: list[float] = []
    sensor.hook.retry_min_wait = 0.01
    sensor.hook.sleep = slept.append
    first = None if first_poke_ago is None else dt.datetime.now(dt.UTC) - dt.timedelta(seconds=first_poke_ago)
    context = {"ti": RescheduledTI(first), "task_reschedule_count": 0 if first is None else 3}

    if waits:
        assert sensor.poke(context) is False  # read again after the wait: still running
        assert len(slept) == 1
        assert HOUR / 2 <= slept[0] <= HOUR / 2 + 1
    else:
        with pytest.raises(TolokaQuotaExhausted, match="HOUR quota"):
            sensor.poke(context)
        assert slept == []
    assert statuses(emu)[0] == 429


def test_a_cascade_and_housekeeping_wait_out_an_hour_quota_on_their_operation_reads(emu, monkeypatch):
    """The watcher's reads of running operations honour wait_out_quota like every other request: the
    quota (resetting in 1 s here, by its Retry-After) is waited out and the archive goes on."""
    import pendulum

    from airflow_provider_toloka.housekeeping import run as housekeeping_run

    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(emu.now))
    emu.operation_duration = 0.2
    emu.add_pool("11", project_id="1", status="CLOSED")
    emu.add_project("2")
    emu.add_pool("20", project_id="2", status="CLOSED")
    emu.advance_clock(2 * DAY)
    emu.inject_fault("429", quota="HOUR", retry_after=1, path="/operations", method="GET")
    cascade = TolokaArchiveProjectOperator(
        task_id="c",
        project_id="1",
        cascade=True,
        poll_interval=0.1,
        wait_out_quota=True,
        execution_timeout=dt.timedelta(hours=2),
    )
    summary = cascade.execute({"ti": RecordingTI()})
    assert summary["pools"]["archived"] == ["10", "11"]
    assert emu.object("project", "1")["status"] == "ARCHIVED"

    emu.inject_fault("429", quota="HOUR", retry_after=1, path="/operations", method="GET")
    housekeeping = TolokaHousekeepingOperator(
        task_id="h", min_idle_days=1, poll_interval=0.1, wait_out_quota=True
    )
    assert housekeeping.execute({"ti": RecordingTI()})["archived"] == ["2"]
    reads = [r.status for r in emu.requests if r.method == "GET" and r.path.startswith("/api/v1/operations")]
    assert reads.count(429) == 2


def test_a_cascade_does_not_wait_out_a_quota_on_its_reads_past_its_deadline(emu):
    emu.operation_duration = 0.2
    emu.inject_fault("429", quota="HOUR", path="/operations", method="GET")
    cascade = TolokaArchiveProjectOperator(
        task_id="c", project_id="1", cascade=True, poll_interval=0.1, wait_out_quota=True, timeout=600
    )
    with pytest.raises(TolokaCascadeFailed, match="HOUR quota"):
        cascade.execute({"ti": RecordingTI()})


@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_quota_past_the_retry_budget_is_still_named_as_the_quota(emu, max_retries):
    """With wait_out_quota every attempt waits the quota out; when the attempts run out the error is
    TolokaQuotaExhausted (when it resets, what to do), not a generic TolokaRetriesExhausted."""
    emu.inject_fault("429", quota="DAY", count=10)
    hook, slept = recording_hook(wait_out_quota=True, deadline=_in(2 * DAY), max_retries=max_retries)
    with pytest.raises(TolokaQuotaExhausted, match="DAY quota"):
        hook.get_pool("10")
    assert statuses(emu) == [429] * (max_retries + 1)
    assert len(slept) == max_retries
