"""``wait_out_quota``: whether a task may sit out an HOUR or DAY quota, and until when it has time to.

Toloka's 429 names the quota that ran out (``payload.interval``). A MIN quota is waited out by the usual
retries; an HOUR or DAY one fails the task at once (``TolokaQuotaExhausted``), since a worker slot held for
an hour is rarely what the user wants. With ``wait_out_quota=True`` the task waits instead, but only when
the quota resets before the task's own deadline would stop it anyway: its ``execution_timeout`` and, for
the archive operators and the sensor, their ``timeout``, whichever ends first.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_toloka.exceptions import TolokaQuotaExhausted


def validate_wait_out_quota(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(
            f"wait_out_quota={value!r} is not valid: pass True to wait for an hour or day quota to reset "
            "(when the task's timeout leaves room), or False to fail at once."
        )
    return value


def task_deadline(execution_timeout: timedelta | None, *timeouts: float | None) -> float | None:
    """Unix time by which the task is stopped, counted from now; ``None`` when nothing bounds it."""
    limits = [seconds for seconds in timeouts if seconds]
    if execution_timeout is not None:
        limits.append(execution_timeout.total_seconds())
    return time.time() + min(limits) if limits else None


def quota_fits(error: TolokaQuotaExhausted, *deadlines: float | None) -> bool:
    """Whether the quota resets before every one of ``deadlines`` (Unix times; ``None`` bounds nothing)."""
    reset = time.time() + error.resets_in
    return all(deadline is None or reset <= deadline for deadline in deadlines)
