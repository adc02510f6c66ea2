"""Wait for a Toloka operation in the triggerer, so a deferred task holds no worker slot.

The trigger only reads (``GET /operations/{id}``): it starts nothing, so running it twice, as Airflow may
after a triggerer restart, costs two polls and nothing else. Status meaning, poll pacing and retry rules
come from the same modules the synchronous hook uses, so a deferred wait and a blocking one behave alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pendulum
from airflow.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_toloka.events import EventStatus, OperationEvent
from airflow_provider_toloka.exceptions import (
    TolokaApiError,
    TolokaError,
    TolokaOperationFailed,
    TolokaRetriesExhausted,
)
from airflow_provider_toloka.operation import OperationStatus, describe, operation_status, poll_delays
from airflow_provider_toloka.retry import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_MAX_WAIT,
    DEFAULT_RETRY_MIN_WAIT,
    RETRYABLE_STATUS,
    backoff_delay,
    describe_fault,
)
from airflow_provider_toloka.triggers.shared_client import SharedClient, shared_client
from airflow_provider_toloka.validation import validate_id, validate_optional_seconds, validate_seconds

# Dropped connections, refused connects, time-outs: faults that may clear up on their own.
_TRANSIENT_ERRORS = (httpx.TransportError,)


class TolokaOperationTrigger(BaseTrigger):
    """Poll a Toloka operation until it ends, then fire one event and stop.

    The event payload is an ``OperationEvent``: ``status`` is ``success``, ``failed`` (the operation
    ended in FAIL; its log is attached), ``timeout`` (still running at ``end_time``) or ``error`` (the
    wait itself failed: bad connection, a 4xx answer, transient faults past the retry budget).

    Nothing needs undoing when the trigger is cancelled: it only borrows the event loop's shared HTTP
    client (``shared_client``), and a Toloka archive cannot be cancelled, so there is no ``on_kill``.

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

    # -- the wait ------------------------------------------------------------------------------

    async def _wait(self) -> OperationEvent:
        async with AsyncExitStack() as stack:
            try:
                shared = await stack.enter_async_context(shared_client(self.toloka_conn_id))
            except ValueError as error:  # the connection is there but not usable: the parser says why
                return self._event("error", None, str(error))
            except AirflowException as error:  # AirflowNotFoundException, secrets-backend failures
                message = f"Cannot read connection {self.toloka_conn_id!r}: {error}"
                return self._event("error", None, message)
            return await self._poll(_OperationReader(shared))

    async def _poll(self, reader: _OperationReader) -> OperationEvent:
        delays = poll_delays(self.poll_interval)
        max_retries = reader.settings.max_retries
        max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        faults = 0
        operation: dict[str, Any] | None = None
        last_line = ""
        while True:
            try:
                operation = await reader.get(f"/operations/{self.operation_id}")
                status = operation_status(operation)
            except (TolokaApiError, *_TRANSIENT_ERRORS) as error:
                if not _is_retryable(error):
                    return self._event("error", operation, str(error))
                faults += 1
                if faults > max_retries:
                    exhausted = TolokaRetriesExhausted(
                        method="GET",
                        path=f"/operations/{self.operation_id}",
                        attempts=faults,
                        last_fault=describe_fault(error),
                    )
                    return self._event("error", operation, str(exhausted))
                delay = backoff_delay(
                    faults,
                    initial=min(DEFAULT_RETRY_MIN_WAIT, self.poll_interval),
                    maximum=max(DEFAULT_RETRY_MAX_WAIT, self.poll_interval),
                    retry_after=getattr(error, "retry_after", None),
                )
                self.log.warning(
                    "Toloka GET /operations/%s: %s; retry %d of %d in %.1f s",
                    self.operation_id,
                    describe_fault(error),
                    faults,
                    max_retries,
                    delay,
                )
            except TolokaError as error:
                return self._event("error", operation, str(error))
            else:
                faults = 0
                line = describe(operation)
                if line != last_line:  # thousands of waiting triggers: log changes, not every poll
                    self.log.info("%s", line)
                    last_line = line
                if status is OperationStatus.SUCCESS:
                    return self._event("success", operation, line)
                if status is OperationStatus.FAIL:
                    failed = await reader.with_log(operation)
                    return self._event("failed", failed, str(TolokaOperationFailed(failed)))
                delay = next(delays)
            if self.end_time is not None:
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    return self._event("timeout", operation, self._timeout_message(operation))
                delay = min(delay, remaining)
            await asyncio.sleep(delay)

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


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, TolokaApiError):
        return error.status_code in RETRYABLE_STATUS
    return isinstance(error, _TRANSIENT_ERRORS)


class _OperationReader:
    """One trigger's reads, turning Toloka's answers into data or the provider's exceptions."""

    def __init__(self, shared: SharedClient) -> None:
        self.shared = shared
        self.settings = shared.settings

    async def get(self, path: str) -> Any:
        response = await self.shared.get(path)
        if response.is_redirect:
            raise TolokaError(
                f"Toloka answered GET {path} with HTTP {response.status_code} redirecting to "
                f"{response.headers.get('Location')!r}; redirects are not followed so the token never "
                f"leaves {self.settings.api_url}. Check the connection's host."
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise TolokaApiError.from_answer(
                method="GET",
                path=path,
                status_code=response.status_code,
                body=body,
                headers=response.headers,
                reason=response.reason_phrase,
                scrub=self._scrub,
            )
        if body is None:
            raise TolokaError(
                f"Toloka answered GET {path} with HTTP {response.status_code} and a body that is not JSON "
                f"({response.headers.get('Content-Type')}): {self._scrub(response.text[:200])!r}"
            )
        return body

    async def with_log(self, operation: dict[str, Any]) -> dict[str, Any]:
        """The FAIL operation with Toloka's log of it attached; one try, as the failure is known anyway."""
        try:
            log = await self.get(f"/operations/{operation['id']}/log")
        except (TolokaError, httpx.TransportError):
            return operation
        return {**operation, "log": log} if log else operation

    def _scrub(self, text: str) -> str:
        return text.replace(self.settings.token, "***")
