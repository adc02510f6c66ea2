"""The provider's metrics, sent through Airflow's ``Stats``: StatsD or OpenTelemetry, as ``[metrics]`` says.

Every name starts with ``toloka.``; ``docs/deployment.md`` lists them all. Airflow moved ``Stats`` between
minors (``airflow.stats`` on 3.0, ``airflow.sdk.observability.stats`` later); common-compat resolves it,
and this module is the only one that asks. It is imported on first use, never at DAG parse: a module that
only builds operators never emits anything. With metrics off Airflow hands a logger that sends nothing.

Names carry their variable parts (method, status, kind) as segments, so plain StatsD can tell them apart;
the same parts also go as tags, for the backends that take them (DogStatsD, OpenTelemetry).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "toloka."


@functools.cache
def _stats() -> Any:
    """Airflow's ``Stats`` wherever this minor keeps it; ``None`` (send nothing) if it cannot be found."""
    try:
        from airflow.providers.common.compat.sdk import Stats
    except ImportError:  # an older common-compat without the name: Airflow's own homes, newest first
        import importlib

        for home in ("airflow.sdk.observability.stats", "airflow.observability.stats", "airflow.stats"):
            try:
                return importlib.import_module(home).Stats
            except (ImportError, AttributeError):
                continue
        return None
    return Stats


def _segment(value: object) -> str:
    """A name segment StatsD accepts: letters, digits and ``_`` (``POOL.ARCHIVE`` -> ``pool_archive``)."""
    return "".join(char if char.isalnum() else "_" for char in str(value).lower()) or "unknown"


def _safely(method: str, *args: Any, **kwargs: Any) -> None:
    """Send one metric; a metrics backend's trouble never fails a request or an archive."""
    try:
        stats = _stats()
        if stats is not None:
            getattr(stats, method)(*args, **kwargs)
    except Exception:  # the backends swallow their own socket errors already; this is for the unforeseen
        log.debug("Could not send metric %s", args[0] if args else "?", exc_info=True)


def incr(name: str, count: int = 1, **tags: str) -> None:
    _safely("incr", PREFIX + name, count, tags=tags or None)


def timing(name: str, seconds: float, **tags: str) -> None:
    _safely("timing", PREFIX + name, timedelta(seconds=max(seconds, 0.0)), tags=tags or None)


def gauge(name: str, value: float, **tags: str) -> None:
    _safely("gauge", PREFIX + name, value, tags=tags or None)


# -- what the provider reports -------------------------------------------------------------------------


def request_answered(method: str, status_code: int) -> None:
    """One answer from Toloka: ``toloka.requests.<method>.<status>``."""
    incr(f"requests.{_segment(method)}.{status_code}", method=method.upper(), status=str(status_code))


def refused_for_rate(quota: str | None) -> None:
    """A 429: the per-second limit (``toloka.rate_limited``) or a quota (``toloka.quota_exhausted.<q>``)."""
    if quota is None:
        incr("rate_limited")
    else:
        incr(f"quota_exhausted.{_segment(quota)}", quota=quota)


def archive_started(kind: str) -> None:
    """Toloka accepted an archive request: ``toloka.archives.<kind>``."""
    incr(f"archives.{_segment(kind)}", kind=kind)


def operation_ended(operation: dict[str, Any]) -> None:
    """An operation seen ending: ``toloka.operation.duration.<type>``, from Toloka's own timestamps."""
    try:
        started = datetime.fromisoformat(str(operation["submitted"]))
        finished = datetime.fromisoformat(str(operation["finished"]))
        seconds = (finished - started).total_seconds()
    except (KeyError, TypeError, ValueError):  # an operation without both timestamps is simply not timed
        return
    op_type = str(operation.get("type") or "unknown")
    timing(
        f"operation.duration.{_segment(op_type)}", seconds, type=op_type, status=str(operation.get("status"))
    )


def budget_waited(seconds: float) -> None:
    """Time one request waited for the shared budget: ``toloka.budget.wait``."""
    timing("budget.wait", seconds)


def budget_store(available: bool) -> None:
    """The shared budget's store was lost (``toloka.budget.lost``) or back (``toloka.budget.recovered``)."""
    incr("budget.recovered" if available else "budget.lost")
