"""Wait for a Toloka operation in the triggerer, so a deferred task holds no worker slot.

The trigger only reads: it registers its operation with the event loop's shared reader
(``triggers.reader``), which reads every waited-on operation of the loop by page, and waits for the
reader to see it end. It starts nothing, so running it twice, as Airflow may after a triggerer restart,
costs nothing but a registration. Status meaning and poll pacing come from the same modules the
synchronous hook uses, so a deferred wait and a blocking one behave alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pendulum
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_toloka import metrics
from airflow_provider_toloka.events import EventStatus, OperationEvent
from airflow_provider_toloka.exceptions import TolokaOperationFailed
from airflow_provider_toloka.operation_status import OperationStatus, describe, operation_status
from airflow_provider_toloka.triggers.reader import OperationReader, WaitOutcome, shared_reader
from airflow_provider_toloka.validation import validate_id, validate_optional_seconds, validate_seconds


class TolokaOperationTrigger(BaseTrigger):
    """Poll a Toloka operation until it ends, then fire one event and stop.

    The event payload is an ``OperationEvent``: ``status`` is ``success``, ``failed`` (the operation
    ended in FAIL; its log is attached), ``timeout`` (still running at ``end_time``, or Toloka could not
    be read when it passed) or ``error`` (the wait itself failed: bad connection, a 4xx answer). Transient
    faults (429, 5xx, dropped connections, time-outs) never end the wait before ``end_time``.

    Nothing needs undoing when the trigger is cancelled: it only leaves the loop's shared reader, and a
    Toloka archive cannot be cancelled, so there is no ``on_kill``.

    :param operation_id: the operation to wait for.
    :param toloka_conn_id: Airflow connection of type ``toloka``; read in the triggerer with the
        async API, never serialized with the trigger.
    :param poll_interval: longest pause between reads of the operation, in seconds; reads start half a
        second apart. Triggers sharing a reader are read together, at the pace the shortest one wants.
    :param end_time: wall-clock deadline as Unix epoch seconds, or ``None`` to wait indefinitely.
        Absolute, so a trigger restarted on another triggerer keeps the original deadline.
    """

    def __init__(
        self,
        operation_id: str,
        toloka_conn_id: str = "toloka_default",
        poll_interval: float = 10.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.operation_id = validate_id("operation_id", operation_id)
        self.toloka_conn_id = toloka_conn_id
        self.poll_interval = validate_seconds("poll_interval", poll_interval)
        self.end_time = validate_optional_seconds("end_time", end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "operation_id": self.operation_id,
                "toloka_conn_id": self.toloka_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The reader forgets the wait before the event leaves, whatever the consumer does with the generator.
        event = await self._wait()
        yield TriggerEvent(event)

    async def _wait(self) -> OperationEvent:
        while True:
            outcome = await self._wait_in(shared_reader(self.toloka_conn_id))
            if outcome.kind != "moved":
                return self._event_for(outcome)
            self.log.info(
                "Connection %r now acts under another account: waiting through a reader under it",
                self.toloka_conn_id,
            )

    async def _wait_in(self, reader: OperationReader) -> WaitOutcome:
        waiter = reader.add(self.operation_id, self.poll_interval, self.end_time)
        self.log.info(
            "Waiting for operation %s through the triggerer's shared reader of connection %r (%d waits)",
            self.operation_id,
            self.toloka_conn_id,
            reader.waiting,
        )
        last_line, in_outage = "", False

        def on_news() -> None:
            nonlocal last_line, in_outage
            line = describe(waiter.seen) if waiter.seen else ""
            if line != last_line:  # thousands of waiting triggers: log changes, not every poll
                self.log.info("%s", line)
                last_line = line
            if reader.outage.active != in_outage:  # once when an outage starts, once when it ends
                in_outage = reader.outage.active
                self.log.warning(
                    "Toloka cannot be read (%s); still waiting, until the deadline"
                    if in_outage
                    else "Toloka answers again (last fault: %s)",
                    reader.outage.last_fault,
                )

        return await reader.follow(waiter, on_news)

    def _event_for(self, outcome: WaitOutcome) -> OperationEvent:
        operation = outcome.operation
        if outcome.kind == "error":
            return self._event("error", operation, outcome.message)
        if outcome.kind == "timeout" or operation is None:
            return self._event("timeout", operation, self._timeout_message(operation) + outcome.message)
        metrics.operation_ended(operation)
        if operation_status(operation) is OperationStatus.FAIL:
            return self._event("failed", operation, str(TolokaOperationFailed(operation)))
        return self._event("success", operation, describe(operation))

    def _timeout_message(self, operation: dict[str, Any] | None) -> str:
        deadline = pendulum.from_timestamp(self.end_time or 0).to_iso8601_string()
        seen = describe(operation) if operation else f"operation {self.operation_id} (never read)"
        return (
            f"Toloka {seen} was not finished at the deadline {deadline}. It keeps running in Toloka: "
            "wait for it with TolokaOperationSensor, or raise the timeout."
        )

    def _event(self, status: EventStatus, operation: dict[str, Any] | None, message: str) -> OperationEvent:
        return OperationEvent(
            status=status, operation_id=self.operation_id, operation=operation, message=message
        )
