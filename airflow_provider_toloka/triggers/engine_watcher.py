"""The cascade engine's waits, in the triggerer, through the event loop's shared reader of operations.

A deferred cascade or housekeeping run (``triggers/cascade.py``) runs the engine on a thread of its own,
and the engine's workers block until their operation ends (``cascade.watch.Watcher``). Here each such wait
is a coroutine on the trigger's event loop that registers the operation with the loop's ``OperationReader``
(``triggers/reader.py``), as ``TolokaOperationTrigger`` does, so the cascade's operations are read by page
together with every other wait of the loop, and the reader's faults, outages and FAIL logs are handled once,
there. While it holds such a wait the reader takes a turn of the cascade's ``SharedThrottle`` for each of its
requests too (``AsyncPacer.join``), so the run's archives and the reads of them keep the connection's
``requests_per_second`` together, as in the worker. The worker thread blocks on the coroutine's future
(``asyncio.run_coroutine_threadsafe``), never the loop on the thread.

Nothing here plans, orders or paces: the engine's main loop keeps doing that; it only has nothing to
``poll`` (the reader reads on its own) and wakes every ``STOP_CHECK`` seconds to see whether its trigger
was cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any

from airflow_provider_toloka import metrics
from airflow_provider_toloka.exceptions import TolokaError
from airflow_provider_toloka.throttle import SharedThrottle
from airflow_provider_toloka.triggers.reader import OperationReader, WaitOutcome, shared_reader

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.execute import Log
    from airflow_provider_toloka.hooks.toloka import TolokaHook

# How often the engine's main loop wakes with nothing to poll: it sees its ``stop`` (a cancelled trigger)
# within this. Waking a thread costs no request.
STOP_CHECK = 0.5


class ReaderWatcher:
    """A ``cascade.watch.Watcher`` whose waits are the shared reader's, on ``loop``; one per cascade run.

    :param loop: the trigger's event loop (its reader's).
    :param conn_id: the connection the reader reads through (``shared_reader``).
    :param hook: the engine's sync hook: whether an HOUR or DAY quota is waited out (``wait_out_quota``).
    :param poll_interval: each wait's longest pause between reads, as a ``TolokaOperationTrigger``'s.
    :param log: the engine's log (the task's): outages and quotas waited out are told there.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn_id: str,
        hook: TolokaHook,
        *,
        poll_interval: float,
        log: Log,
    ) -> None:
        self.loop = loop
        self.conn_id = conn_id
        self.hook = hook
        self.poll_interval = poll_interval
        self.log = log
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[dict[str, Any]]] = set()
        self._error: BaseException | None = None
        self._in_outage = False  # touched on the loop only

    # --- called from the engine's threads --------------------------------------------------------------

    def wait(self, operation: dict[str, Any]) -> dict[str, Any]:
        with self._lock:  # an ``abort`` either sees this wait or comes first and is raised here
            if self._error is not None:
                raise self._error
            future = asyncio.run_coroutine_threadsafe(self._wait(operation), self.loop)
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._error is None:  # cancelled on the loop (the triggerer is stopping), not by ``abort``
                raise
            raise self._error from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def abort(self, error: BaseException) -> None:
        """Wake every waiting thread with ``error`` at once; later waits raise it without registering.

        Cancelling a future of ``run_coroutine_threadsafe`` wakes its thread now and has the loop cancel the
        coroutine (``call_soon_threadsafe``), whose wait then leaves the reader.
        """
        with self._lock:
            self._error = error
            pending = list(self._pending)
        for future in pending:
            future.cancel()

    def set_busy(self, busy: bool) -> None:
        """Nothing to do: the reader keeps its own pace, not the task's."""

    def poll(self) -> None:
        """Nothing to do: the reader reads on the loop, and ends only the waits a refusal concerns."""

    def seconds_until_due(self) -> float:
        return STOP_CHECK

    # --- on the loop -------------------------------------------------------------------------------------

    async def _wait(self, operation: dict[str, Any]) -> dict[str, Any]:
        operation_id = str(operation["id"])
        op_type = str(operation["type"]) if operation.get("type") else None
        while True:
            outcome = await self._wait_in(shared_reader(self.conn_id), operation_id, op_type)
            if outcome.kind == "ended" and outcome.operation is not None:
                metrics.operation_ended(outcome.operation)
                return outcome.operation  # a FAIL one with its log: the engine raises it
            if outcome.kind == "moved":  # the connection's account changed: its new reader
                continue
            error = outcome.error
            if error is not None and self.hook.may_wait_out(error):
                pause: float = error.resets_in  # type: ignore[attr-defined]
                self.log.warning("%s; waiting %.0f s for it (wait_out_quota)", error, pause)
                await asyncio.sleep(pause)
                continue
            raise error or TolokaError(f"Waiting for operation {operation_id} failed: {outcome.message}")

    async def _wait_in(self, reader: OperationReader, operation_id: str, op_type: str | None) -> WaitOutcome:
        # No deadline of its own: the engine's ``timeout`` ends its waits through ``abort``.
        waiter = reader.add(operation_id, self.poll_interval, None, op_type)
        throttle = self.hook.throttle if isinstance(self.hook.throttle, SharedThrottle) else None
        if throttle is not None:  # the reader's reads of it take the cascade's turns: one pace for the run
            reader.pacer.join(throttle)
        try:
            return await reader.follow(waiter, lambda: self._tell_outage(reader))  # ``abort`` cancels it
        finally:
            if throttle is not None:
                reader.pacer.leave(throttle)

    def _tell_outage(self, reader: OperationReader) -> None:
        """Once in the task's log when Toloka stops answering the reader, once when it answers again."""
        if reader.outage.active == self._in_outage:
            return
        self._in_outage = reader.outage.active
        self.log.warning(
            "Toloka cannot be read (%s); the cascade's operations keep running, still waiting"
            if self._in_outage
            else "Toloka answers again (last fault: %s)",
            reader.outage.last_fault,
        )
