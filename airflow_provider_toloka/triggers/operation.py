"""Wait for a Toloka operation in the triggerer, so a deferred task holds no worker slot.

The trigger only reads, through ``TolokaAsyncHook`` (``GET /operations/{id}``): it starts nothing,
so running it twice, as Airflow may after a triggerer restart, costs two polls and nothing else.
Status meaning, poll pacing and retry rules come from the same modules the synchronous hook uses,
so a deferred wait and a blocking one behave alike.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pendulum
from airflow.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_toloka.events import EventStatus, OperationEvent
from airflow_provider_toloka.exceptions import TolokaError, TolokaOperationFailed
from airflow_provider_toloka.hooks.toloka_async import TolokaAsyncHook
from airflow_provider_toloka.operation import OperationStatus, describe, operation_status, poll_delays
from airflow_provider_toloka.retry import DEFAULT_RETRY_MIN_WAIT
from airflow_provider_toloka.validation import validate_id, validate_optional_seconds, validate_seconds


class TolokaOperationTrigger(BaseTrigger):
    """Poll a Toloka operation until it ends, then fire one event and stop.

    The event payload is an ``OperationEvent``: ``status`` is ``success``, ``failed`` (the operation
    ended in FAIL; its log is attached), ``timeout`` (still running at ``end_time``) or ``error`` (the
    wait itself failed: bad connection, a 4xx answer, transient faults past the retry budget).

    Nothing needs undoing when the trigger is cancelled: it only borrows the event loop's shared HTTP
    client (through ``TolokaAsyncHook``), and a Toloka archive cannot be cancelled, so there is no
    ``on_kill``.

    :param operation_id: the operation to wait for.
    :param toloka_conn_id: Airflow connection of type ``toloka``; read in the triggerer with the
        async API, never serialized with the trigger.
    :param poll_interval: longest pause between polls, in seconds; polls start half a second apart.
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
        # The client is given back before the event leaves, whatever the consumer does with the generator.
        event = await self._wait()
        yield TriggerEvent(event)

    async def _wait(self) -> OperationEvent:
        try:
            # A poll interval shorter than the default back-off should not wait longer on a fault.
            hook = TolokaAsyncHook(
                self.toloka_conn_id, retry_min_wait=min(DEFAULT_RETRY_MIN_WAIT, self.poll_interval)
            )
            async with hook:
                return await self._poll(hook)
        except ValueError as error:  # the connection is there but not usable: the parser says why
            return self._event("error", None, str(error))
        except AirflowException as error:  # AirflowNotFoundException, secrets-backend failures
            return self._event("error", None, f"Cannot read connection {self.toloka_conn_id!r}: {error}")

    async def _poll(self, hook: TolokaAsyncHook) -> OperationEvent:
        delays = poll_delays(self.poll_interval)
        operation: dict[str, Any] | None = None
        last_line = ""
        while True:
            try:
                operation = await hook.get_operation(self.operation_id)
                status = operation_status(operation)
            except TolokaError as error:  # refusals, faults past the retry budget, undocumented answers
                return self._event("error", operation, str(error))
            line = describe(operation)
            if line != last_line:  # thousands of waiting triggers: log changes, not every poll
                self.log.info("%s", line)
                last_line = line
            if status is OperationStatus.SUCCESS:
                return self._event("success", operation, line)
            if status is OperationStatus.FAIL:
                failed = await hook.operation_with_log(operation)
                return self._event("failed", failed, str(TolokaOperationFailed(failed)))
            delay = next(delays)
            if self.end_time is not None:
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    return self._event("timeout", operation, self._timeout_message(operation))
                delay = min(delay, remaining)
            # Jitter: triggers started together (a DAG fanning out) would otherwise poll together, in bursts.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

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
