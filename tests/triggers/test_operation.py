"""``TolokaOperationTrigger.run()`` against the emulator over real HTTP, as the triggerer drives it."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import httpx
import pytest
from tenacity import BaseRetrying

from airflow_provider_toloka import compat
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.hooks.toloka_async import TolokaAsyncHook
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

CLASSPATH = "airflow_provider_toloka.triggers.operation.TolokaOperationTrigger"


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    return toloka_conn


def start_archive(emu) -> str:
    return TolokaHook().archive_pool("10")["id"]


async def events_of(trigger: TolokaOperationTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def operation_polls(emu, operation_id: str) -> list[int]:
    return [r.status for r in emu.requests if r.path.endswith(f"/operations/{operation_id}")]


async def test_success_fires_one_event_with_the_operation(emu):
    emu.operation_duration = 0.3
    operation_id = start_archive(emu)
    events = await events_of(TolokaOperationTrigger(operation_id, poll_interval=0.05))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "success"
    assert event["operation_id"] == operation_id
    assert event["operation"]["status"] == "SUCCESS"
    assert event["operation"]["parameters"] == {"pool_id": "10"}
    assert "POOL.ARCHIVE" in event["message"]
    assert emu.object("pool", "10")["status"] == "ARCHIVED"


async def test_fail_carries_the_details_and_the_log(emu):
    emu.fail_next("pool", "10", details={"reason": "pool is locked by a migration"})
    operation_id = start_archive(emu)
    [event] = await events_of(TolokaOperationTrigger(operation_id, poll_interval=0.05))
    assert event["status"] == "failed"
    assert event["operation"]["status"] == "FAIL"
    assert event["operation"]["details"] == {"reason": "pool is locked by a migration"}
    assert event["operation"]["log"]
    assert "pool is locked by a migration" in event["message"]
    assert emu.object("pool", "10")["status"] == "CLOSED"


async def test_still_running_at_end_time_is_a_timeout_with_the_last_state(emu):
    emu.operation_duration = 60
    operation_id = start_archive(emu)
    trigger = TolokaOperationTrigger(operation_id, poll_interval=0.05, end_time=time.time() + 0.3)
    [event] = await events_of(trigger)
    assert event["status"] == "timeout"
    assert event["operation"]["status"] in ("PENDING", "RUNNING")
    assert "not finished at the deadline" in event["message"]


def wait_until_finished(operation_id: str) -> None:
    """Wait on the condition (the operation ended in Toloka), not on a clock."""
    hook = TolokaHook()
    while hook.get_operation(operation_id)["status"] not in ("SUCCESS", "FAIL"):
        time.sleep(0.05)


async def test_a_restart_after_the_deadline_still_reports_a_finished_operation(emu):
    operation_id = start_archive(emu)
    wait_until_finished(operation_id)
    trigger = TolokaOperationTrigger(operation_id, poll_interval=0.05, end_time=time.time() - 60)
    [event] = await events_of(trigger)
    assert event["status"] == "success"


async def test_transient_faults_are_retried(emu):
    emu.operation_duration = 0.3
    operation_id = start_archive(emu)
    emu.clear_requests()
    emu.inject_fault("429", path="/operations/", retry_after=0.1)
    emu.inject_fault("503", path="/operations/")
    emu.inject_fault("drop", path="/operations/")
    [event] = await events_of(TolokaOperationTrigger(operation_id, poll_interval=0.05))
    assert event["status"] == "success"
    assert operation_polls(emu, operation_id)[:4] == [429, 503, 0, 200]


async def test_an_outage_longer_than_the_retry_budget_does_not_end_the_wait(emu, monkeypatch, caplog):
    """Once the operation exists, the wait rides out faults until its deadline: with a retry budget of 2,
    ten faults in a row used to end it in an error event. The outage is logged once each way."""
    conn = json.loads(emu.airflow_conn_json())
    conn["extra"]["max_retries"] = 2
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))
    operation_id = start_archive(emu)
    emu.clear_requests()
    emu.inject_fault("502", count=4, path="/operations")
    emu.inject_fault("drop", count=3, path="/operations")
    emu.inject_fault("503", count=3, path="/operations")
    [event] = await events_of(TolokaOperationTrigger(operation_id, poll_interval=0.05))
    assert event["status"] == "success"
    assert [r.status for r in emu.requests][:10] == [502] * 4 + [0] * 3 + [503] * 3
    # The shared reader's own lines (on Airflow 3.0 the trigger's task-log lines reach caplog too).
    messages = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_toloka.triggers.reader"]
    assert sum("cannot be read" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1
    assert any("answers again" in m and "10 failed attempts" in m for m in messages)


async def test_an_outage_past_the_deadline_is_a_timeout_that_names_it(emu):
    emu.operation_duration = 60
    operation_id = start_archive(emu)
    emu.inject_fault("503", count=10_000, path="/operations")
    trigger = TolokaOperationTrigger(operation_id, poll_interval=0.05, end_time=time.time() + 0.5)
    [event] = await events_of(trigger)
    assert event["status"] == "timeout"
    assert "not finished at the deadline" in event["message"]
    assert "could not be read" in event["message"]
    assert "HTTP 503" in event["message"]


async def test_a_refused_token_is_an_error_at_once_with_tolokas_code(emu, monkeypatch):
    operation_id = start_archive(emu)
    conn = json.loads(emu.airflow_conn_json())
    conn["password"] = "revoked-token-12345"
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))
    emu.clear_requests()
    [event] = await events_of(TolokaOperationTrigger(operation_id, poll_interval=0.05))
    assert event["status"] == "error"
    assert event["operation"] is None
    assert "HTTP 401 AUTHENTICATION_ERROR" in event["message"]
    assert "check the token" in event["message"]
    assert "revoked-token-12345" not in json.dumps(event)
    # Asked once more after the connection was read again (a rotated token would be there), then ended.
    assert [r.status for r in emu.requests] == [401, 401]


async def test_unknown_operation_is_an_error_without_retries(emu):
    emu.clear_requests()
    [event] = await events_of(TolokaOperationTrigger("no-such-op", poll_interval=0.05))
    assert event["status"] == "error"
    assert "HTTP 404 DOES_NOT_EXIST" in event["message"]
    assert len(emu.requests) == 1


async def test_a_missing_connection_is_an_error_event(emu):
    trigger = TolokaOperationTrigger("op-1", toloka_conn_id="no_such_conn")
    [event] = await events_of(trigger)
    assert event["status"] == "error"
    assert "no_such_conn" in event["message"]
    assert emu.requests == []


def test_serialize_round_trips_through_airflow_serde_and_holds_no_token(toloka_conn):
    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow 3.0 and 3.1 keep serde in core
        from airflow.serialization.serde import deserialize, serialize

    trigger = TolokaOperationTrigger("op-1", poll_interval=5, end_time=1_900_000_000.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert all(isinstance(v, (str, int, float, type(None))) for v in kwargs.values())
    restored = TolokaOperationTrigger(**deserialize(serialize(kwargs)))
    assert restored.serialize() == (classpath, kwargs)
    assert toloka_conn.token not in json.dumps(kwargs)
    assert toloka_conn.token not in repr(trigger)


async def test_events_hold_no_token(emu):
    emu.fail_next("pool", "10", details={"reason": "broken"})
    [event] = await events_of(TolokaOperationTrigger(start_archive(emu), poll_interval=0.05))
    assert emu.token not in json.dumps(event)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operation_id": "../x"}, "operation_id='../x'"),
        ({"operation_id": "op", "poll_interval": 0}, "poll_interval=0"),
        ({"operation_id": "op", "end_time": float("nan")}, "end_time=nan"),
    ],
)
def test_bad_arguments_are_refused_when_the_trigger_is_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TolokaOperationTrigger(**kwargs)


async def test_triggers_in_one_loop_share_one_client_and_one_connection_read(emu, monkeypatch):
    reads, clients = [], []
    read = compat.aget_connection_and_extra
    client_init = httpx.AsyncClient.__init__

    async def counting_read(conn_id):
        reads.append(conn_id)
        return await read(conn_id)

    def counting_init(self, *args, **kwargs):
        clients.append(self)
        client_init(self, *args, **kwargs)

    monkeypatch.setattr(compat, "aget_connection_and_extra", counting_read)
    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    emu.operation_duration = 0.3
    ids = []
    for pool_id in ("11", "12", "13"):
        emu.add_pool(pool_id, project_id="1", status="CLOSED")
        ids.append(TolokaHook().archive_pool(pool_id)["id"])
    triggers = [TolokaOperationTrigger(op_id, poll_interval=0.05) for op_id in ids]
    results = await asyncio.gather(*(events_of(t) for t in triggers))
    assert [event["status"] for [event] in results] == ["success"] * 3
    assert reads == ["toloka_default"]
    assert len(clients) == 1


def cyclic_garbage(*kinds: type) -> list[str]:
    """Names of the objects of ``kinds`` that only Python's cyclic collector would have freed."""
    gc.collect()
    return [type(o).__name__ for o in gc.garbage if isinstance(o, kinds)]


async def test_polls_leave_nothing_for_the_cyclic_garbage_collector(emu):
    """Garbage in reference cycles waits for Python's full collection, which walks every object in the
    triggerer and stalls all its triggers (~200 ms at 1000 triggers in ``benchmarks/bench_trigger.py``).
    httpx responses form such cycles unless the shared reader breaks them."""
    emu.operation_duration = 600  # ends when the emulator's clock is moved, after three polls
    operation_id = start_archive(emu)
    gc.collect()  # slow in a large test process: before polling starts
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        polled = asyncio.create_task(events_of(TolokaOperationTrigger(operation_id, poll_interval=0.05)))
        while len(operation_polls(emu, operation_id)) < 3:
            await asyncio.sleep(0.01)
        emu.advance_clock(601)
        [event] = await polled
        cyclic = cyclic_garbage(httpx.Response)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert event["status"] == "success"
    assert cyclic == []


async def test_retried_reads_leave_no_retry_state_for_the_cyclic_garbage_collector(emu):
    """The async hook's retried reads (``TolokaAsyncHook``, tenacity's ``AsyncRetrying``): tenacity keeps
    its last attempt's actions in a reference cycle unless the hook releases it after each read."""
    operation_id = start_archive(emu)
    emu.inject_fault("503", count=2, path=f"/operations/{operation_id}")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with TolokaAsyncHook(retry_min_wait=0.01, retry_max_wait=0.02) as hook:
            for _ in range(3):
                await hook.get_operation(operation_id)
        cyclic = cyclic_garbage(BaseRetrying)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    # Two reads were refused and retried: the retry path ran.
    assert [status for status in operation_polls(emu, operation_id)][:3] == [503, 503, 200]
    assert cyclic == []
