"""Carry out a cascade, or a housekeeping run, in the triggerer, so the task holds no worker slot meanwhile.

Both triggers run the one cascade engine (``cascade``: the planner, the steps, ``CascadeRunner``), the
very code ``deferrable=False`` runs in the worker, so the two cannot plan, order or pace differently. The
engine sends through the synchronous hook, on a thread of its own in the triggerer, so it never blocks the
triggerer's event loop; the loop only awaits its end. The connection is read on the loop with the async
API (``compat``), never from that thread, and the trigger's kwargs never hold the token.

Why not the engine's own watcher (``cascade/watch.py``), as in the worker: in the triggerer the loop's
shared reader (``triggers/reader.py``) is the one way operations are waited on. The engine's workers wait
through it (``triggers/engine_watcher.py``), so the cascade's operations are read by page together with
the loop's other deferred waits, and its reads still take the cascade's turns (one pace for the run).

Restarts. Airflow may recreate a trigger from the database on another triggerer, and briefly run it
twice. Each run lists again and plans from what it finds: archived objects are skipped, and an archive
or close that Toloka refuses with 409 ``OPERATION_ALREADY_EXISTS`` (the other run, or the run before the
restart, started it) becomes a wait on that running operation (``TolokaHook._start``), so no object
gets a second operation. The deadline is absolute (``end_time``) and survives a restart.

Cancelled (the task cleared or marked, the triggerer stopping), a trigger tells its engine to stop: no
new request goes out and the thread ends after the requests in flight. What Toloka already runs keeps
running (an archive cannot be undone). When a user killed the task (Airflow 3.3+ calls ``on_kill`` then,
not on a restart), ``on_kill`` returns only once the engine has sent its last request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_toloka import compat
from airflow_provider_toloka.cascade.outcome import cascade_event, pack
from airflow_provider_toloka.connection import TolokaConnectionSettings
from airflow_provider_toloka.validation import validate_count, validate_id, validate_optional_seconds

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.watch import Watcher
    from airflow_provider_toloka.hooks.toloka import TolokaHook

T = TypeVar("T")


# How long ``on_kill`` waits for the engine to send its last request: under Airflow's own bound for it
# (``[triggerer] on_kill_timeout``, 30 s by default).
ON_KILL_WAIT = 25.0


def start_in_thread(name: str, run: Callable[[], T]) -> asyncio.Future[T]:
    """``run()`` on a new daemon thread (with this task's context, so its log lines reach the task).

    Not ``asyncio.to_thread``: a run lasts minutes to hours, and held on the loop's default executor (a
    handful of threads) it would starve everything else the triggerer sends there. A daemon thread never
    holds up the triggerer's exit either. The future settles when ``run`` returns or raises.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    # Read, so an outcome nobody awaits any more (a cancelled trigger) is not reported as lost.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result: T | None = context.run(run)
        except BaseException as error:
            outcome: tuple[T | None, BaseException | None] = (None, error)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop closed (the triggerer is exiting)
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


class _EngineTrigger(BaseTrigger):
    """Reads the connection, runs ``_carry_out`` on a thread until it returns its event, or stops it."""

    toloka_conn_id: str
    poll_interval: float

    def _kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def _carry_out(
        self, settings: TolokaConnectionSettings, stop: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _watcher(self, hook: TolokaHook, loop: asyncio.AbstractEventLoop) -> Callable[[], Watcher]:
        """What each of the engine's cascades waits with: the shared reader of ``loop``, the trigger's."""
        from airflow_provider_toloka.triggers.engine_watcher import ReaderWatcher

        return lambda: ReaderWatcher(
            loop, self.toloka_conn_id, hook, poll_interval=self.poll_interval, log=self.log
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", self._kwargs()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            conn, extra = await compat.aget_connection_and_extra(self.toloka_conn_id)
            settings = TolokaConnectionSettings.from_connection(conn, extra=extra)
        except Exception as error:  # not found, unusable, no answer: the task fails with why
            yield TriggerEvent(cascade_event(error=error))
            return
        from airflow_provider_toloka.triggers.reader import shared_reader

        self._stop = stop = threading.Event()
        loop = asyncio.get_running_loop()
        # The loop's reader, kept open for the engine's waits until it ends (or the trigger is cancelled).
        with shared_reader(self.toloka_conn_id).kept_open():
            self._engine = engine = start_in_thread(
                type(self).__name__, lambda: self._carry_out(settings, stop, loop)
            )
            try:
                # Shielded: cancelling the trigger stops the engine through ``stop``, and ``on_kill`` can
                # still wait for it to end.
                event = await asyncio.shield(engine)
            finally:
                stop.set()  # cancelled: the engine sends nothing more and stops waiting
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """A user killed the deferred task (Airflow 3.3+): return once the engine has sent its last request.

        Cancelling the trigger already told the engine to stop; this waits (up to ``ON_KILL_WAIT``) for the
        requests in flight, so nothing reaches Toloka after the kill is done. Not on a triggerer restart:
        there Airflow calls no ``on_kill``, and the trigger's next run continues the cascade.
        """
        engine: asyncio.Future[dict[str, Any]] | None = getattr(self, "_engine", None)
        if engine is None:
            return
        self._stop.set()
        with contextlib.suppress(Exception):  # the engine's own failure is no news to a killed task
            await asyncio.wait_for(asyncio.shield(engine), ON_KILL_WAIT)


class TolokaCascadeTrigger(_EngineTrigger):
    """Archive a whole project (``TolokaArchiveProjectOperator(cascade=True, deferrable=True)``).

    Fires one event (``cascade.outcome.CascadeEvent``): the summary in compact form on success, or what
    the task raises (held back, failed or timed out, blocked, or an error) with the same message and
    summary as the run in the worker.

    :param project_id: the project to archive with its pools and trainings.
    :param toloka_conn_id: Airflow connection of type ``toloka``; read in the triggerer with the async API,
        never serialized with the trigger.
    :param close_open: close open pools and trainings first instead of refusing.
    :param dry_run: list and plan only; send no close or archive (the event carries the plan).
    :param max_concurrency: operations in flight at once.
    :param poll_interval: longest pause between reads of running operations, in seconds.
    :param timeout: the operator's ``timeout`` for the whole cascade (``None``: no limit), counted from
        ``end_time - timeout``: when the task deferred, even across restarts.
    :param end_time: when ``timeout`` runs out, as a Unix time (``None`` with no ``timeout``).
    :param wait_out_quota: wait for an HOUR or DAY quota to reset when it does so before ``quota_deadline``.
    :param quota_deadline: the task's own deadline as a Unix time (``execution_timeout``, ``timeout``).
    """

    def __init__(
        self,
        project_id: str,
        toloka_conn_id: str = "toloka_default",
        *,
        close_open: bool = False,
        dry_run: bool = False,
        max_concurrency: int = 128,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        end_time: float | None = None,
        wait_out_quota: bool = False,
        quota_deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.project_id = validate_id("project_id", project_id)
        self.toloka_conn_id = toloka_conn_id
        self.close_open = bool(close_open)
        self.dry_run = bool(dry_run)
        self.max_concurrency = validate_count("max_concurrency", max_concurrency, minimum=1)
        self.poll_interval = float(poll_interval)
        self.timeout = validate_optional_seconds("timeout", timeout)
        self.end_time = validate_optional_seconds("end_time", end_time)
        self.wait_out_quota = bool(wait_out_quota)
        self.quota_deadline = validate_optional_seconds("quota_deadline", quota_deadline)

    def _kwargs(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "toloka_conn_id": self.toloka_conn_id,
            "close_open": self.close_open,
            "dry_run": self.dry_run,
            "max_concurrency": self.max_concurrency,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
            "end_time": self.end_time,
            "wait_out_quota": self.wait_out_quota,
            "quota_deadline": self.quota_deadline,
        }

    def _carry_out(
        self, settings: TolokaConnectionSettings, stop: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> dict[str, Any]:
        from airflow_provider_toloka.cascade import archive_project_cascade
        from airflow_provider_toloka.cascade.task import cascade_hook

        hook = cascade_hook(
            self.toloka_conn_id,
            self.max_concurrency,
            settings=settings,
            wait_out_quota=self.wait_out_quota,
            deadline=self.quota_deadline,
        )
        clock: Callable[[], float] = time.monotonic
        if self.timeout is not None and self.end_time is not None:
            # The timeout counts from when the task deferred: the clock reads what has passed since.
            offset = time.time() - (self.end_time - self.timeout) - time.monotonic()
            clock = lambda: time.monotonic() + offset  # noqa: E731
        try:
            summary = archive_project_cascade(
                hook,
                self.project_id,
                close_open=self.close_open,
                dry_run=self.dry_run,
                max_concurrency=self.max_concurrency,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                log=self.log,
                stop=stop,
                clock=clock,
                new_watcher=self._watcher(hook, loop),
            )
        except Exception as error:
            return dict(cascade_event(error=error))
        return dict(cascade_event(summary))


class TolokaHousekeepingTrigger(_EngineTrigger):
    """A whole housekeeping run (``TolokaHousekeepingOperator(deferrable=True)``): list, assess, archive.

    Fires one event: ``{"status": "done", "packed": <the report, compact>}``, which the task turns back
    into the same summary, log table and asset events as a run in the worker; or ``error`` with why the
    run could not go through the account at all.

    :param toloka_conn_id: Airflow connection of type ``toloka``; read in the triggerer with the async API,
        never serialized with the trigger.
    :param min_idle_days: days since a project's last activity before it is archived.
    :param close_open: close the open pools and trainings of idle projects instead of skipping them.
    :param dry_run: assess only; archive nothing (the report lists what a real run would archive).
    :param max_concurrency: projects handled at once.
    :param poll_interval: longest pause between reads of running operations, in seconds.
    :param project_ids: handle only these projects (each assessed again); ``None``: every active one.
    :param max_projects: handle at most this many projects (lowest ids first).
    :param wait_out_quota: wait for an HOUR or DAY quota to reset when it does so before ``quota_deadline``.
    :param quota_deadline: the task's ``execution_timeout`` as a Unix time, counted from when it deferred.
    """

    def __init__(
        self,
        toloka_conn_id: str = "toloka_default",
        *,
        min_idle_days: float = 30,
        close_open: bool = False,
        dry_run: bool = False,
        max_concurrency: int = 8,
        poll_interval: float = 10.0,
        project_ids: list[str] | None = None,
        max_projects: int | None = None,
        wait_out_quota: bool = False,
        quota_deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.toloka_conn_id = toloka_conn_id
        self.min_idle_days = float(min_idle_days)
        self.close_open = bool(close_open)
        self.dry_run = bool(dry_run)
        self.max_concurrency = validate_count("max_concurrency", max_concurrency, minimum=1)
        self.poll_interval = float(poll_interval)
        self.project_ids = (
            None if project_ids is None else [validate_id("project_ids[]", i) for i in project_ids]
        )
        self.max_projects = (
            None if max_projects is None else validate_count("max_projects", max_projects, minimum=1)
        )
        self.wait_out_quota = bool(wait_out_quota)
        self.quota_deadline = validate_optional_seconds("quota_deadline", quota_deadline)

    def _kwargs(self) -> dict[str, Any]:
        return {
            "toloka_conn_id": self.toloka_conn_id,
            "min_idle_days": self.min_idle_days,
            "close_open": self.close_open,
            "dry_run": self.dry_run,
            "max_concurrency": self.max_concurrency,
            "poll_interval": self.poll_interval,
            "project_ids": self.project_ids,
            "max_projects": self.max_projects,
            "wait_out_quota": self.wait_out_quota,
            "quota_deadline": self.quota_deadline,
        }

    def _carry_out(
        self, settings: TolokaConnectionSettings, stop: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> dict[str, Any]:
        from airflow_provider_toloka.cascade.task import cascade_hook
        from airflow_provider_toloka.housekeeping import run_housekeeping
        from airflow_provider_toloka.housekeeping.run import operations_per_project

        # Sized as the operator sizes it: one pace, a connection for each sender.
        threads = self.max_concurrency * (operations_per_project(self.max_concurrency) + 1)
        hook = cascade_hook(
            self.toloka_conn_id,
            threads,
            settings=settings,
            wait_out_quota=self.wait_out_quota,
            deadline=self.quota_deadline,
        )
        try:
            report = run_housekeeping(
                hook,
                min_idle_days=self.min_idle_days,
                close_open=self.close_open,
                dry_run=self.dry_run,
                max_concurrency=self.max_concurrency,
                poll_interval=self.poll_interval,
                log=self.log,
                project_ids=self.project_ids,
                max_projects=self.max_projects,
                stop=stop,
                new_watcher=self._watcher(hook, loop),
            )
        except Exception as error:
            return {"status": "error", "message": f"{type(error).__name__}: {error}"}
        return {"status": "done", "packed": pack(report.to_state())}
