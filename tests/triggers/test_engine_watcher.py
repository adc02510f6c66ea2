"""A deferred cascade waits on its operations through the event loop's shared reader, against the emulator.

What a user would notice: a cascade trigger beside plain ``TolokaOperationTrigger`` waits in one triggerer
loop is served by the same one reader (its counters, its closing log line), its operations cost list pages
rather than a read each, and a stopped cascade leaves the reader at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from airflow_provider_toloka.cascade.execute import CascadeStopped
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger
from airflow_provider_toloka.triggers.engine_watcher import ReaderWatcher
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger
from airflow_provider_toloka.triggers.reader import OperationReader, active_reader

POOLS = [str(100 + i) for i in range(30)]
WAITS = 5  # plain deferred waits beside the cascade
OPERATIONS = "/api/v1/operations"


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_project("7")
    for pool_id in POOLS:
        toloka_conn.add_pool(pool_id, project_id="7")
    return toloka_conn


async def until(condition, step: float = 0.02) -> None:
    """Wait on a condition, not on a clock."""
    while not condition():
        await asyncio.sleep(step)


def reader_waiting(count: int) -> OperationReader | None:
    reader = active_reader("toloka_default")
    return reader if reader is not None and reader.waiting >= count else None


def long_archives(emu, count: int) -> list[dict]:
    """Archives of another project's pools whose operations outlast the test."""
    emu.operation_duration = 600
    hook = TolokaHook()
    operations = []
    for pool_id in range(900, 900 + count):
        emu.add_pool(str(pool_id), project_id="8")
        operations.append(hook.archive_pool(str(pool_id)))
    return operations


async def cascade(project_id: str = "7", max_concurrency: int = 8) -> dict:
    trigger = TolokaCascadeTrigger(project_id, max_concurrency=max_concurrency, poll_interval=0.5)
    [event] = [event.payload async for event in trigger.run()]
    return event


def closed_readers(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Shared reader of Toloka operations" in r.getMessage()]


async def test_a_cascade_and_single_waits_on_one_loop_are_served_by_one_reader(emu, caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_toloka.triggers.reader")
    waited = long_archives(emu, WAITS)
    emu.operation_duration = 0.3

    async def single(operation_id: str) -> None:
        async for _ in TolokaOperationTrigger(operation_id, poll_interval=0.5).run():
            pass

    singles = [asyncio.ensure_future(single(operation["id"])) for operation in waited]
    await until(lambda: reader_waiting(WAITS) is not None)
    reader = active_reader("toloka_default")
    emu.clear_requests()

    assert (await cascade())["status"] == "success"

    assert active_reader("toloka_default") is reader, "the cascade waited through the loop's one reader"
    cascade_operations = len(POOLS) + 1  # each pool's archive, then the project's
    assert reader.served == WAITS + cascade_operations
    singles_read = [r for r in emu.requests if r.method == "GET" and r.path.startswith(OPERATIONS + "/")]
    pages_read = [r for r in emu.requests if r.method == "GET" and r.path == OPERATIONS]
    assert pages_read, "the cascade's operations were read by page"
    assert len(singles_read) < cascade_operations / 2, "not one read per operation"
    assert reader.list_reads >= len(pages_read)  # every page was the reader's, none a watcher's of its own
    for task in singles:
        task.cancel()
    await asyncio.gather(*singles, return_exceptions=True)
    await until(lambda: closed_readers(caplog))
    closed = closed_readers(caplog)
    assert len(closed) == 1
    assert f"closed: {WAITS + cascade_operations} waits served with" in closed[0]


async def test_a_cascade_alone_keeps_one_reader_open_between_its_waits(emu, caplog):
    """One step at a time: each wait ends before the next archive is sent, and the trigger keeps the reader
    open across the gaps instead of each wait starting a new one (and reading the connection again)."""
    caplog.set_level(logging.INFO, logger="airflow_provider_toloka.triggers.reader")
    emu.operation_duration = 0.1
    for pool_id in ("50", "51", "52"):
        emu.add_pool(pool_id, project_id="9")

    assert (await cascade("9", max_concurrency=1))["status"] == "success"

    await until(lambda: closed_readers(caplog))
    assert len(closed_readers(caplog)) == 1
    assert "closed: 4 waits served with" in closed_readers(caplog)[0]  # three pools, then the project


async def test_a_failed_operations_log_is_read_once_by_the_reader(emu):
    emu.operation_duration = 0.1
    emu.fail_next("pool", POOLS[3], details={"reason": "injected"})

    event = await cascade()

    assert event["status"] == "failed"
    assert "injected" in event["message"]  # Toloka's log of the failure, as the reader read it
    log_reads = [r for r in emu.requests if r.path.endswith("/log")]
    assert len(log_reads) == 1


async def test_abort_wakes_every_blocked_wait_at_once_and_the_reader_forgets_them(emu):
    operations = long_archives(emu, 3)
    hook = TolokaHook()
    watcher = ReaderWatcher(
        asyncio.get_running_loop(), "toloka_default", hook, poll_interval=0.5, log=logging.getLogger(__name__)
    )
    blocked = [asyncio.ensure_future(asyncio.to_thread(watcher.wait, op)) for op in operations]
    await until(lambda: reader_waiting(len(operations)) is not None)
    reader = active_reader("toloka_default")
    assert reader is not None

    started = time.monotonic()
    watcher.abort(CascadeStopped("stopped"))
    outcomes = await asyncio.gather(*blocked, return_exceptions=True)

    assert time.monotonic() - started < 2
    assert all(isinstance(outcome, CascadeStopped) for outcome in outcomes)
    await until(lambda: reader.closed)  # its last wait left: the reader closed
    with pytest.raises(CascadeStopped):  # a later wait raises at once and registers nothing
        await asyncio.to_thread(watcher.wait, operations[0])
    assert active_reader("toloka_default") is None
