"""Many ``TolokaOperationTrigger``s in one loop, served by one shared reader, against the emulator.

What a user (and the Toloka account) would notice is counted in the emulator's request log: how many
requests the waits cost, which faults they met, and that every wait still ends with the right event.

Tests of the reader's pace run it on the emulator's time (``emulator_time``): that time stands still but
for ``advance_clock``, and each timed wait of the reader advances it instead of sleeping. The schedule the
reader keeps is then read exactly from each request's ``emulator_time``, and operations end exactly when
their duration says, however loaded the machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_toloka.emulator.server import TolokaEmulator
from airflow_provider_toloka.hooks import toloka_async
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.triggers import reader as reader_module
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger
from airflow_provider_toloka.triggers.reader import active_reader

LIST = "/api/v1/operations"


@pytest.fixture
def emu(toloka_conn):
    return toloka_conn


@pytest.fixture
def emulator_time(monkeypatch) -> Iterator[TolokaEmulator]:
    """An emulator whose time moves only by ``advance_clock``, and the reader running on that time.

    Each timed wait of the reader advances the emulator's clock by what it would have slept (unless what
    it waits on is already set), so rounds come exactly when the reader schedules them.
    """
    t0 = time.time()
    with TolokaEmulator(clock=lambda: t0) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", emulator.airflow_conn_json())

        async def timed_wait(event: asyncio.Event, seconds: float) -> None:
            await asyncio.sleep(0)  # whatever is ready runs first, e.g. a trigger registering
            if not event.is_set():
                emulator.advance_clock(seconds)

        monkeypatch.setattr(reader_module, "clock", lambda: emulator.now.timestamp())
        monkeypatch.setattr(reader_module, "timed_wait", timed_wait)
        yield emulator


def start_archives(emu, count: int, first: int = 100) -> list[str]:
    hook = TolokaHook()
    ids = []
    for pool_id in range(first, first + count):
        emu.add_pool(str(pool_id), project_id="1", status="CLOSED")
        ids.append(hook.archive_pool(str(pool_id))["id"])
    return ids


async def events_of(trigger: TolokaOperationTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


async def wait_all(ids: list[str], poll_interval: float = 0.2) -> list[dict]:
    results = await asyncio.gather(
        *(events_of(TolokaOperationTrigger(op_id, poll_interval=poll_interval)) for op_id in ids)
    )
    return [event for [event] in results]


def list_reads(emu) -> list[Any]:
    return [r for r in emu.requests if r.path == LIST]


def single_reads(emu, operation_id: str | None = None) -> list[Any]:
    prefix = f"{LIST}/{operation_id}" if operation_id else f"{LIST}/"
    return [r for r in emu.requests if r.path.startswith(prefix)]


async def until(condition, step: float = 0.02) -> None:
    """Wait on a condition, not on a clock."""
    while not condition():
        await asyncio.sleep(step)


def finish_times(emu, ids: list[str]) -> list[float]:
    finished = [op["finished"] for op in emu.operations() if op["id"] in ids]
    return [dt.datetime.fromisoformat(f).replace(tzinfo=dt.UTC).timestamp() for f in finished]


def first_finish(emu, ids: list[str]) -> float:
    return min(finish_times(emu, ids))


def last_finish(emu, ids: list[str]) -> float:
    return max(finish_times(emu, ids))


async def test_fifty_waits_cost_a_few_list_reads_per_poll_not_fifty_polls(emulator_time):
    emu = emulator_time
    emu.operation_duration = 2.5
    ids = start_archives(emu, 50)  # all at one instant of the emulator's time: they end together
    emu.clear_requests()

    events = await wait_all(ids, poll_interval=1)

    assert [e["status"] for e in events] == ["success"] * 50
    assert {e["operation_id"] for e in events} == set(ids)
    assert all(e["operation"]["status"] == "SUCCESS" and e["operation"]["finished"] for e in events)
    # While nothing had ended, every request was a page of the list, two per round (PENDING, RUNNING) at
    # 0.5 and 1.5 s; fifty triggers polling on their own would have sent 100 by then. (Rounds come on
    # the half second: 0.1 s spares the round at 2.5 s, when they end, the rounding of "finished".)
    before_end = [r for r in emu.requests if r.emulator_time < first_finish(emu, ids) - 0.1]
    assert [r.path for r in before_end] == [LIST] * 4
    # Each operation is read on its own at most once, when it has ended.
    for operation_id in ids:
        assert len(single_reads(emu, operation_id)) <= 1


async def test_a_burst_of_new_triggers_costs_one_round_not_one_read_each(emu):
    emu.operation_duration = 30
    ids = start_archives(emu, 40)
    emu.clear_requests()
    waits = [asyncio.ensure_future(wait_all(ids, poll_interval=5))]
    await until(lambda: len(emu.requests) >= 2)
    reader = active_reader("toloka_default")
    assert reader is not None
    await until(lambda: all(w.seen for ws in reader._by_id.values() for w in ws))
    # The first round read every operation through two pages (PENDING, then RUNNING), none on its own.
    assert [r.path for r in emu.requests] == [LIST, LIST]
    waits[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waits[0]


def sweeps(emu) -> list[float]:
    """When each round that read a list ran, in the emulator's time (which stands still during a round)."""
    return sorted({r.emulator_time for r in list_reads(emu)})


async def test_while_operations_end_the_group_is_read_at_half_its_pace(emulator_time):
    emu = emulator_time
    # Two operations end every second of the emulator's time from 15.25 s to 26.25 s, so each sweep in
    # that spell finds some ended; before it, nothing ends for several rounds.
    ids: list[str] = []
    for second in range(12):
        emu.operation_duration = 15.25 + second
        ids += start_archives(emu, 2, first=100 + 2 * second)
    emu.clear_requests()

    events = await wait_all(ids, poll_interval=3)

    assert [e["status"] for e in events] == ["success"] * 24
    first_end, last_end = first_finish(emu, ids), last_finish(emu, ids)
    starts = sweeps(emu)
    # Past the fast first reads (0.5, 1 and 2 s apart) and nothing ended yet: every poll_interval.
    quiet = [b - a for a, b in itertools.pairwise(starts) if a > starts[0] + 2 and b < first_end]
    assert len(quiet) >= 3
    assert quiet == pytest.approx([3.0] * len(quiet))
    # Once sweeps miss operations (they are ending), every half poll_interval, until the last has ended.
    ending = [b - a for a, b in itertools.pairwise(starts) if a > first_end and b < last_end]
    assert len(ending) >= 3
    assert ending == pytest.approx([1.5] * len(ending))


async def test_a_429_is_met_once_for_everyone_and_its_retry_after_honoured(emu):
    emu.operation_duration = 1.5
    ids = start_archives(emu, 20)
    emu.clear_requests()
    emu.inject_fault("429", path="/operations", retry_after=1)

    events = await wait_all(ids)

    assert [e["status"] for e in events] == ["success"] * 20
    statuses = [r.status for r in emu.requests]
    assert statuses.count(429) == 1
    refused = statuses.index(429)
    after = emu.requests[refused + 1]
    assert after.time - emu.requests[refused].time >= 1.0  # Retry-After: 1, for all twenty waits


@pytest.mark.parametrize("fault", ["500", "503", "drop"])
async def test_5xx_and_drops_are_ridden_out_by_the_shared_read(emu, fault):
    emu.operation_duration = 1.0
    ids = start_archives(emu, 20)
    emu.clear_requests()
    emu.inject_fault(fault, count=8, path="/operations")  # more than the connection's retry budget

    events = await wait_all(ids)

    assert [e["status"] for e in events] == ["success"] * 20
    faulted = [r for r in emu.requests if r.status in (0, 500, 503)]
    assert len(faulted) == 8  # each fault was met once for all twenty waits, not once per wait
    assert faulted[0].path == LIST


def hide_from_lists(emu, monkeypatch, hidden: str, show_as: str | None = None) -> None:
    """Lists that leave out ``hidden`` (or, with ``show_as``, misreport its status) as a lagging or
    crowded page would; reads of the operation itself stay true."""
    state = emu._state
    list_operations = state.list_operations

    def lying_list(**kwargs: Any) -> tuple[list[dict[str, Any]], bool]:
        items, has_more = list_operations(**kwargs)
        if show_as is None:
            return [op for op in items if op["id"] != hidden], has_more
        return [{**op, "status": show_as} if op["id"] == hidden else op for op in items], has_more

    monkeypatch.setattr(state, "list_operations", lying_list)


async def test_an_operation_a_page_misses_is_read_on_its_own(emu, monkeypatch):
    emu.operation_duration = 1.5
    ids = start_archives(emu, 10)
    hide_from_lists(emu, monkeypatch, ids[3])
    emu.clear_requests()

    events = await wait_all(ids)

    assert [e["status"] for e in events] == ["success"] * 10
    hidden = next(e for e in events if e["operation_id"] == ids[3])
    assert hidden["operation"]["parameters"] == {"pool_id": "103"}
    assert single_reads(emu, ids[3])  # the page did not show it: read directly
    assert list_reads(emu)


async def test_a_page_showing_an_impossible_state_is_not_believed(emu, monkeypatch):
    """A RUNNING page listing the operation as SUCCESS (it is not) must not end the wait early."""
    emu.operation_duration = 1.5
    ids = start_archives(emu, 10)
    hide_from_lists(emu, monkeypatch, ids[0], show_as="SUCCESS")
    emu.clear_requests()

    events = await wait_all(ids)

    lied_about = next(e for e in events if e["operation_id"] == ids[0])
    assert lied_about["status"] == "success"
    assert lied_about["operation"]["finished"]  # the true final state, read on its own
    assert emu.object("pool", "100")["status"] == "ARCHIVED"
    assert single_reads(emu, ids[0])


async def test_a_cancelled_trigger_leaves_the_reader_serving_the_others_and_the_last_closes_it(emu):
    emu.operation_duration = 2.0
    ids = start_archives(emu, 3)
    tasks = [asyncio.ensure_future(events_of(TolokaOperationTrigger(i, poll_interval=0.2))) for i in ids]
    await until(lambda: active_reader("toloka_default") is not None)
    reader = active_reader("toloka_default")
    await until(lambda: reader.waiting == 3 and list_reads(emu))

    tasks[0].cancel()  # the task was cleared: Airflow cancels its trigger
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert reader.waiting == 2
    [first], [second] = await asyncio.gather(tasks[1], tasks[2])
    assert (first["status"], second["status"]) == ("success", "success")

    # The reader closed with its last trigger, and gave the shared client back.
    assert active_reader("toloka_default") is None
    await until(lambda: reader._task.done())
    assert not toloka_async._registries.get(asyncio.get_running_loop())


async def test_cancelling_the_only_trigger_closes_the_reader_and_a_new_one_starts_afresh(emu):
    emu.operation_duration = 60
    [long_op] = start_archives(emu, 1)
    task = asyncio.ensure_future(events_of(TolokaOperationTrigger(long_op, poll_interval=0.1)))
    await until(lambda: single_reads(emu, long_op))
    reader = active_reader("toloka_default")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert active_reader("toloka_default") is None
    await until(lambda: reader._task.done())
    assert not toloka_async._registries.get(asyncio.get_running_loop())

    # A trigger moved here from another triggerer (or started anew) gets a reader of its own.
    emu.operation_duration = 0.2
    [short_op] = start_archives(emu, 1, first=200)
    [event] = await events_of(TolokaOperationTrigger(short_op, poll_interval=0.05))
    assert event["status"] == "success"


async def test_a_rotated_token_reaches_the_reader(emu, monkeypatch):
    """The reader re-reads the connection as the shared client ages (MAX_AGE): here at once, so the
    revoked token is what the next read carries, and Toloka's 401 ends the wait."""
    monkeypatch.setattr(toloka_async, "MAX_AGE", 0.0)
    emu.operation_duration = 60
    [operation_id] = start_archives(emu, 1)
    task = asyncio.ensure_future(events_of(TolokaOperationTrigger(operation_id, poll_interval=0.1)))
    await until(lambda: single_reads(emu, operation_id))
    conn = json.loads(emu.airflow_conn_json())
    conn["password"] = "rotated-away-token"
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))

    [event] = await task

    assert event["status"] == "error"
    assert "HTTP 401" in event["message"]
    assert "rotated-away-token" not in json.dumps(event)


async def test_a_refused_read_ends_only_that_wait(emu):
    emu.operation_duration = 0.5
    ids = start_archives(emu, 2)
    events = await wait_all([*ids, "no-such-operation"])
    assert [e["status"] for e in events] == ["success", "success", "error"]
    assert "HTTP 404 DOES_NOT_EXIST" in events[2]["message"]


@pytest.mark.parametrize("declared", [None, 8])
async def test_a_declared_rate_paces_the_readers_own_requests(request, declare_rate, declared):
    # Unset, the emulator's clock stands until the limit is met (``held_until_limited_conn``): the round
    # meets it by count, not by fitting into a real second.
    emu = request.getfixturevalue("held_until_limited_conn" if declared is None else "emu")
    emu.operation_duration = 0.01
    ids = start_archives(emu, 20)  # all ended by the first round: 2 list pages, then 20 single reads
    emu.advance_clock(1)
    emu.clear_requests()
    emu.rate_limit = 10
    if declared is not None:
        declare_rate(declared)  # 11 requests at 8 a second span 1.28 s: no second of arrivals holds 11

    events = await wait_all(ids)

    assert [e["status"] for e in events] == ["success"] * 20
    refused = [r for r in emu.requests if r.status == 429]
    if declared is None:
        assert refused, "the round's 22 requests at once meet a limit of 10 a second"
    else:
        assert refused == [], "the reader sent its round one pace interval apart"


async def test_a_bad_declared_rate_ends_every_wait_with_the_fix_and_sends_nothing(emu, declare_rate):
    emu.operation_duration = 60
    ids = start_archives(emu, 3)
    emu.clear_requests()
    declare_rate(-1)

    events = await wait_all(ids)

    assert [e["status"] for e in events] == ["error"] * 3
    assert "extra.requests_per_second=-1 is not valid" in events[0]["message"]
    assert "above 0 and at most 300" in events[0]["message"]
    assert emu.requests == []
