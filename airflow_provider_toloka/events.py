"""The one event ``TolokaOperationTrigger`` sends back, and what a task makes of it.

The trigger builds it and the deferring operators and sensor read it; keeping both sides here means the
shape is written down once. It holds only JSON values, so it passes through Airflow's serde unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

from airflow_provider_toloka.exceptions import TolokaError, TolokaOperationFailed

EventStatus = Literal["success", "failed", "timeout", "error"]
EVENT_STATUSES: tuple[EventStatus, ...] = ("success", "failed", "timeout", "error")


class OperationEvent(TypedDict):
    """``status``: how the wait ended; ``operation``: Toloka's last answer (``None`` if none was read)."""

    status: EventStatus
    operation_id: str
    operation: dict[str, Any] | None
    message: str


def operation_from_event(event: Any, *, on_timeout: Callable[[OperationEvent], Exception]) -> dict[str, Any]:
    """The finished operation from a ``success`` event; anything else raises with the operation's details.

    :param on_timeout: builds the error for a ``timeout`` event, so an operator can raise
        ``TolokaOperationTimeout`` and a sensor ``AirflowSensorTimeout`` (which honours ``soft_fail``).
    """
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise TolokaError(
            f"Expected an event from TolokaOperationTrigger with a status among {', '.join(EVENT_STATUSES)}, "
            f"got {event!r}; the trigger and the task may come from different provider versions."
        )
    status = event["status"]
    operation = event.get("operation")
    if status == "success" and isinstance(operation, dict):
        return operation
    if status == "failed" and isinstance(operation, dict):
        raise TolokaOperationFailed(operation)
    if status == "timeout":
        raise on_timeout(event)  # type: ignore[arg-type]
    raise TolokaError(
        f"Waiting for Toloka operation {event.get('operation_id')} failed: {event.get('message')}"
    )
