"""What a Toloka operation's status means.

The hook, the operators, the sensor and the trigger all ask this module, so "is it done?",
"did it work?" and "how do we describe it?" have exactly one answer each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from airflow_provider_toloka.exceptions import TolokaError


class OperationStatus(str, Enum):  # noqa: UP042 - StrEnum would change str() and format() of members
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"

    @property
    def is_terminal(self) -> bool:
        return self in (OperationStatus.SUCCESS, OperationStatus.FAIL)


def operation_status(operation: Mapping[str, Any]) -> OperationStatus:
    """The operation's status, refusing answers Toloka does not document rather than guessing."""
    if not isinstance(operation, Mapping):
        raise TolokaError(f"Toloka answered with {operation!r:.200} where an operation object was expected.")
    raw = operation.get("status")
    try:
        return OperationStatus(raw)
    except ValueError:
        raise TolokaError(
            f"Toloka operation {operation.get('id')!r} has status {raw!r}, which is none of "
            f"{', '.join(s.value for s in OperationStatus)}; the API may have changed."
        ) from None


def is_terminal(operation: Mapping[str, Any]) -> bool:
    return operation_status(operation).is_terminal


def describe(operation: Mapping[str, Any]) -> str:
    """One progress line, e.g. ``POOL.ARCHIVE 40% RUNNING (operation 95029e60…, pool_id=42)``."""
    params = ", ".join(f"{k}={v}" for k, v in (operation.get("parameters") or {}).items())
    progress = operation.get("progress")
    pct = f" {progress:g}%" if isinstance(progress, (int, float)) else ""
    return (
        f"{operation.get('type', 'operation')}{pct} {operation.get('status')} "
        f"(operation {operation.get('id')}{', ' + params if params else ''})"
    )


def poll_delays(poll_interval: float, first: float = 0.5, factor: float = 2.0) -> Iterator[float]:
    """Seconds to sleep between polls: start short (most archives finish in seconds), then back off.

    Grows geometrically from ``first`` and stays at ``poll_interval`` once it gets there, so a long
    wait costs one request per ``poll_interval`` and a short one is noticed within a second.
    """
    delay = min(first, poll_interval)
    while True:
        yield delay
        delay = min(delay * factor, poll_interval)
