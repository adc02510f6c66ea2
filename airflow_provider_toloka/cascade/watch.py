"""Waiting on many operations with a few requests instead of one poll per operation.

Each worker thread that started an operation hands it to the watcher and blocks. One thread (the
cascade's main loop) calls ``poll()``: per operation type it reads the newest page of operations
(``GET /operations?type=…&sort=-submitted``, up to 300 at once) and wakes every worker whose
operation finished. An operation missing from that page (other clients' operations crowded it out)
is read on its own, so correctness never depends on the page.

Against a limit of 100 requests a second this matters: polling each of 1000 operations at least
once costs 1000 requests, 10 s of the budget; reading them by page costs a few dozen.

How often it reads. While the task keeps to a pace and has archives queued for it (``set_busy``), every
``busy_interval``: each read takes a turn from those archives, so it reads no more often than the
workers' slots need (a finished operation's worker waits half that, on average, to be woken). Its reads
go ahead of the queued archives (``SharedThrottle.ahead``): behind them, a read would come as late as
the queue is long, and the slots it frees would stay held that long. Otherwise, at a quarter of the
time the newest waited operation has run, between ``min_interval`` and ``max_interval``: the end of
a cascade is a chain (last pool, its training, the project) whose every link waits on the read before
it, so a quick operation is seen within a tenth of a second, while an hour-long one costs a read every
``max_interval``.

A Toloka outage does not wake anyone: the operations keep running in Toloka, so a poll whose read
fails with a transient fault (429, 5xx, dropped connection, time-out) leaves every worker waiting and
tries again later, backing off towards ``max_interval``; the outage is logged when it begins and when
it ends. An HOUR or DAY quota (``TolokaQuotaExhausted``) is waited out until it resets when the hook's
``wait_out_quota`` allows it (it resets before the task's deadline), and otherwise ends the waits like a
refusal (any other 4xx), through ``abort``.

The engine needs only ``Watcher`` of whatever waits for it. This watcher is the worker's
(``deferrable=False``). In the triggerer the engine waits through ``triggers/reader.py`` instead, the
loop's one shared reader of operations (``triggers/engine_watcher.py`` bridges the engine's threads to
it), so a deferred cascade and the loop's deferred single waits are read together, by page.

Why not the shared reader in the worker too: it lives on an event loop, which a worker task does not run,
and it keeps the rhythm of deferred waits (a first read after half a second, then twice as long each time up
to ``poll_interval``). This watcher keeps the task's: every ``busy_interval`` while archives queue for the
pace, otherwise soon after the newest operation could have ended, so the chain at the end of a cascade is
seen within a tenth of a second of each link.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_toloka import metrics
from airflow_provider_toloka.operation_status import is_terminal
from airflow_provider_toloka.outage import Outage

if TYPE_CHECKING:
    from airflow_provider_toloka.hooks.toloka import TolokaHook


class Watcher(Protocol):
    """What the cascade's engine (``execute.CascadeRunner``) needs of whatever waits on its operations.

    Worker threads call ``wait``; the engine's main loop calls the rest between its steps.
    """

    def wait(self, operation: dict[str, Any]) -> dict[str, Any]:
        """Block until the operation ends (SUCCESS or FAIL) and return it; raise what ``abort`` was given."""
        ...

    def set_busy(self, busy: bool) -> None:
        """Hear whether archives are queued for the task's pace."""
        ...

    def poll(self) -> None:
        """Read what is due; raise only what ends every wait (a refusal)."""
        ...

    def abort(self, error: BaseException) -> None:
        """Make every wait, blocked now or later, raise ``error`` at once."""
        ...

    def seconds_until_due(self) -> float:
        """How long the main loop may sleep on its steps before it calls ``poll`` again."""
        ...


@dataclass
class _BlockedWorker:
    operation: dict[str, Any]
    since: float
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class OperationWatcher:
    """Batched polling of operations for many waiting threads.

    :param min_interval: shortest pause between polls (a quarter of the newest operation's age, at
        least this).
    :param busy_interval: pause between polls while the task has archives queued for its pace
        (``set_busy``).
    :param max_interval: longest pause between polls.
    :param clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        hook: TolokaHook,
        *,
        min_interval: float = 0.1,
        busy_interval: float = 0.5,
        max_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hook = hook
        self.clock = clock
        self.min_interval = min(min_interval, max_interval)
        self.busy_interval = min(max(busy_interval, self.min_interval), max_interval)
        self.max_interval = max_interval
        self._busy = False
        self._due = 0.0
        self._polled_at = 0.0
        self._lock = threading.Lock()
        self._waiters: dict[str, _BlockedWorker] = {}
        self._outage = Outage(
            "the running operations", hook.log, min_wait=self.min_interval, max_wait=self.max_interval
        )

    def wait(self, operation: dict[str, Any]) -> dict[str, Any]:
        """Block the calling worker until ``poll()`` sees the operation finished; return it."""
        with self._lock:
            waiter = _BlockedWorker(operation, since=self.clock())
            if not self._waiters:
                self._due = waiter.since + self.min_interval
            self._waiters[operation["id"]] = waiter
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.operation

    def set_busy(self, busy: bool) -> None:
        """Say whether archives are queued for the task's pace (polls then come ``busy_interval`` apart)."""
        with self._lock:
            if self._busy and not busy:  # the queue has drained: the next poll comes sooner
                self._due = min(self._due, self._polled_at + self.min_interval)
            self._busy = busy

    def seconds_until_due(self) -> float:
        with self._lock:
            if not self._waiters:
                return self.min_interval
            return max(0.0, self._due - self.clock())

    def poll(self) -> None:
        """Read the operations being waited on, if a poll is due; wake the workers of finished ones.

        Raises only what is not worth trying again (a refusal); a transient fault is waited out.
        """
        with self._lock:
            if not self._waiters or self.clock() < self._due:
                return
            waiting = dict(self._waiters)
        try:
            finished = self._read(waiting)
        except Exception as error:
            if self.hook.may_wait_out(error):
                # An HOUR or DAY quota that resets before the task's deadline (``wait_out_quota``).
                pause = error.resets_in  # type: ignore[attr-defined]
                self.hook.log.warning("%s; waiting %.0f s for it (wait_out_quota)", error, pause)
            elif not self.hook.is_transient(error):
                raise
            else:
                pause = self._outage.failed(error)
            with self._lock:
                self._due = self.clock() + pause
            return
        self._outage.recovered()
        with self._lock:
            for operation in finished:
                metrics.operation_ended(operation)
                waiter = self._waiters.pop(operation["id"])
                waiter.operation = operation
                waiter.done.set()
            self._polled_at = self.clock()
            if self._busy:  # operations keep starting, so they keep finishing: no back-off
                interval = self.busy_interval
            else:
                # A quarter of the time the newest operation has run: a quick one is seen within a
                # tenth of a second or so, a long one costs a read every few seconds. (With no one
                # left waiting the next ``wait`` sets the due time itself.)
                newest = max((waiter.since for waiter in self._waiters.values()), default=self._polled_at)
                interval = min(max((self._polled_at - newest) / 4, self.min_interval), self.max_interval)
            self._due = self._polled_at + interval

    def abort(self, error: BaseException) -> None:
        """Wake every waiting worker with ``error`` (polling itself failed)."""
        with self._lock:
            for waiter in self._waiters.values():
                waiter.error = error
                waiter.done.set()
            self._waiters.clear()

    def _read(self, waiting: dict[str, _BlockedWorker]) -> list[dict[str, Any]]:
        by_type: dict[str, set[str]] = defaultdict(set)
        for operation_id, waiter in waiting.items():
            by_type[str(waiter.operation.get("type"))].add(operation_id)
        finished = []
        throttle = self.hook.throttle
        with throttle.ahead() if throttle is not None else contextlib.nullcontext():
            for op_type, ids in by_type.items():
                finished.extend(self._read_type(op_type, ids))
        return finished

    def _read_type(self, op_type: str, ids: set[str]) -> list[dict[str, Any]]:
        page = self.hook.recent_operations(op_type, retry=False)
        seen = {op["id"]: op for op in page if op.get("id") in ids}
        finished = []
        for operation_id in ids:
            operation = seen.get(operation_id) or self.hook.get_operation(operation_id, retry=False)
            if is_terminal(operation):
                finished.append(operation)
        return finished
