"""``OperationWatcher``: when the cascade reads its running operations, against the emulator over real
HTTP, on a fake clock of the watcher's own (the emulator's operations end when the test moves its clock)."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_toloka.cascade.watch import OperationWatcher
from airflow_provider_toloka.hooks.toloka import TolokaHook


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def running(toloka_conn):
    """An hour-long pool archive, started; a watcher on a fake clock; a thread waiting on it."""
    toloka_conn.operation_duration = 3600
    toloka_conn.add_project("7")
    toloka_conn.add_pool("100", project_id="7")
    hook = TolokaHook()
    operation = hook.archive_pool("100")
    assert operation is not None
    assert operation["status"] in ("PENDING", "RUNNING")
    clock = Clock()
    watcher = OperationWatcher(hook, clock=clock)
    result: dict[str, object] = {}

    def wait() -> None:
        try:
            result.update(watcher.wait(operation))
        except RuntimeError as error:  # the abort at the end of a test that never ended it
            result["error"] = error

    worker = threading.Thread(target=wait, daemon=True)
    worker.start()
    while not watcher._waiters:  # registered (the worker blocks right after)
        worker.join(0.01)
    yield toloka_conn, watcher, clock, worker, result
    watcher.abort(RuntimeError("test over"))


def reads(emu) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and "/operations" in r.path)


def poll_at_due(watcher: OperationWatcher, clock: Clock) -> float:
    pause = watcher.seconds_until_due()
    clock.now += pause
    watcher.poll()
    return pause


def test_a_quick_end_is_seen_within_a_tenth_of_a_second_and_an_hour_costs_few_reads(running):
    emu, watcher, clock, worker, result = running

    pauses = [poll_at_due(watcher, clock) for _ in range(8)]
    # A quarter of the operation's age, never under a tenth of a second: it is read 0.1, 0.2, ... 0.5 s
    # after it started (one that ends after half a second is seen at most 0.1 s late), then a quarter
    # of its age at each read: the pauses grow with it.
    assert pauses == pytest.approx([0.1] * 5 + [0.5 / 4, 0.625 / 4, 0.78125 / 4])

    while clock.now < 3600:
        poll_at_due(watcher, clock)
    # Never more than max_interval apart, so an hour costs a few hundred reads, not one every 0.1 s.
    assert watcher.seconds_until_due() <= watcher.max_interval
    assert reads(emu) < 3600 / watcher.max_interval + 60

    emu.advance_clock(3600)
    poll_at_due(watcher, clock)
    worker.join(5)
    assert result["status"] == "SUCCESS"


def test_while_archives_queue_for_the_pace_it_reads_every_busy_interval_then_hurries(running):
    emu, watcher, clock, _, _ = running
    watcher.set_busy(True)
    for _ in range(20):
        poll_at_due(watcher, clock)
    busy_reads = reads(emu)

    # The first read min_interval after the wait began, then each busy_interval after the one before,
    # though nothing finished (no quicker: each read takes a queued archive's turn; no slower: the
    # slots it frees are what the queue waits for).
    assert clock.now == pytest.approx(watcher.min_interval + 19 * watcher.busy_interval)

    # The queue drains: the next read comes min_interval after the last one, not busy_interval.
    watcher.set_busy(False)
    assert watcher.seconds_until_due() == pytest.approx(watcher.min_interval)
    poll_at_due(watcher, clock)
    assert reads(emu) == busy_reads + 1
