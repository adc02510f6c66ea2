"""Which failed requests are worth repeating, and how long to wait before repeating them.

Toloka's archive and close calls are idempotent (a second archive answers 204 or names the
running operation), so every request may be retried; but only faults that can clear up on their
own are: 429, 5xx from Toloka or a proxy, dropped connections and time-outs. A 400/401/403/404/409
will answer the same way every time, so it fails at once.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_toloka.exceptions import (
    QUOTA_WINDOWS,
    TolokaApiError,
    TolokaQuotaExhausted,
    TolokaRetriesExhausted,
)
from airflow_provider_toloka.quota import quota_fits

if TYPE_CHECKING:
    from tenacity import BaseRetrying

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0
# Defaults shared by the hook and the trigger, so both give up after the same run of faults.
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_MIN_WAIT = 1.0
DEFAULT_RETRY_MAX_WAIT = 30.0


def parse_retry_after(value: str | None, *, maximum: float | None = MAX_RETRY_AFTER) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at five minutes.

    :param maximum: the cap; ``None`` for none, to tell when an hour or day quota resets.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (pendulum.instance(when) - pendulum.now("UTC")).total_seconds()
    seconds = max(seconds, 0.0)
    return seconds if maximum is None else min(seconds, maximum)


def backoff_delay(attempt: int, *, initial: float, maximum: float, retry_after: float | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential back-off with equal jitter.

    The ceiling doubles from ``initial`` up to ``maximum``, and the delay is drawn from its upper
    half: waiters spread out, yet none comes back almost at once, as full jitter (``0..ceiling``)
    would allow. When the server said how long to wait (``Retry-After``) that is the floor, with up
    to 10 % (plus 50 ms) on top so many waiters that were told the same number do not return in lockstep.
    """
    if retry_after is not None:
        return retry_after + random.uniform(0, retry_after * 0.1 + 0.05)
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


# Only Toloka's answers carry a status here: every AirflowException has ``status_code`` (500 by
# default), so a redirect or a non-JSON body would otherwise pass for a retryable HTTP 500.
def describe_fault(error: BaseException) -> str:
    """A short name for a fault, for retry log lines and the final error."""
    if isinstance(error, TolokaApiError):
        quota = f" ({error.quota} quota)" if error.quota else ""
        return f"HTTP {error.status_code}" + (f" {error.code}" if error.code else "") + quota
    return f"{type(error).__name__}: {error}"


def is_retryable(error: BaseException, transient: tuple[type[BaseException], ...]) -> bool:
    """A retryable HTTP status, or one of the client library's transient errors (dropped, timed out).

    Not an HOUR or DAY quota (``TolokaQuotaExhausted``): a few retries seconds apart cannot outlast it.
    """
    if isinstance(error, TolokaQuotaExhausted):
        return False
    if isinstance(error, TolokaApiError):
        return error.status_code in RETRYABLE_STATUS
    return isinstance(error, transient)


def release(retrying: BaseRetrying) -> None:
    """Let a finished ``Retrying``/``AsyncRetrying`` be freed by reference counting.

    tenacity keeps the last attempt's actions, bound methods of the retrying object itself, in a
    reference cycle: one cyclic garbage heap per request. A triggerer polling thousands of operations
    then runs Python's full collection, which walks every object of the process and stalls the event
    loop each time (``benchmarks/bench_trigger.py`` prints for how long). Clearing the actions breaks
    the cycle.
    """
    retrying.iter_state.reset()


def retry_policy(
    *,
    method: str,
    path: str,
    max_retries: int,
    min_wait: float,
    max_wait: float,
    transient: tuple[type[BaseException], ...],
    log: Any,
    wait_out_quota: bool = False,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments for tenacity's ``Retrying`` (sync hook) or ``AsyncRetrying`` (async hook).

    One policy for both, so a blocking wait and a deferred one retry the same faults the same way and
    give up with the same ``TolokaRetriesExhausted`` naming the last fault and the attempts made.

    A 429 for a MIN quota without ``Retry-After`` waits the whole minute (toloka-kit does the same): the
    exponential back-off would spend every retry inside the window. An HOUR or DAY quota is raised at once
    (``TolokaQuotaExhausted``), unless ``wait_out_quota`` and it resets before ``deadline`` (Unix time, the
    task's own; ``None``: none): then it is waited out, once per attempt. Still there when the attempts
    run out (``max_retries=0`` included), it is raised as the ``TolokaQuotaExhausted`` it is.
    """
    from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

    def error_of(state: RetryCallState) -> BaseException:
        error = state.outcome.exception() if state.outcome else None
        assert error is not None
        return error

    def give_up(state: RetryCallState) -> None:
        error = error_of(state)
        if isinstance(error, TolokaQuotaExhausted):
            # Waited out on every attempt and still there: say which quota and when it resets.
            raise error
        raise TolokaRetriesExhausted(
            method=method, path=path, attempts=state.attempt_number, last_fault=describe_fault(error)
        ) from error

    def should_retry(error: BaseException) -> bool:
        if not isinstance(error, TolokaQuotaExhausted):
            return is_retryable(error, transient)
        if wait_out_quota and quota_fits(error, deadline):
            return True
        if wait_out_quota:
            log.warning(
                "Toloka %s %s: the %s quota resets in %.0f s, after the task's deadline: not waiting for it",
                method,
                path,
                error.quota,
                error.resets_in,
            )
        return False

    def wait(state: RetryCallState) -> float:
        error = error_of(state)
        if isinstance(error, TolokaQuotaExhausted):
            return error.resets_in + random.uniform(0, 1)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None and getattr(error, "quota", None) == "MIN":
            retry_after = QUOTA_WINDOWS["MIN"]
        return backoff_delay(
            state.attempt_number, initial=min_wait, maximum=max_wait, retry_after=retry_after
        )

    def log_retry(state: RetryCallState) -> None:
        log.warning(
            "Toloka %s %s: %s; retry %d of %d in %.1f s",
            method,
            path,
            describe_fault(error_of(state)),
            state.attempt_number,
            max_retries,
            state.upcoming_sleep,
        )

    return {
        "stop": stop_after_attempt(max_retries + 1),
        "wait": wait,
        "retry": retry_if_exception(should_retry),
        "before_sleep": log_retry,
        "retry_error_callback": give_up,
    }
