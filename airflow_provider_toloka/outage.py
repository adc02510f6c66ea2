"""Riding out a Toloka outage while waiting on an operation that already runs there.

A request that starts something (archive, close) keeps the hook's bounded retries: giving up is safe,
as a retried task finds the running operation again. A wait is different. The operation runs in
Toloka whether we can read it or not, so failing the task because Toloka was unreachable for a minute
throws away a wait that would have succeeded, and with ``retries=0`` fails the DAG run. So the waits
(``TolokaHook.wait_for_operation``, the sensor's pokes, the cascade's watcher) keep reading through
transient faults until their own deadline, and tell the user about each outage twice: when it begins
and when it ends, with its length, instead of a warning at every attempt.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_toloka.retry import backoff_delay, describe_fault


class Outage:
    """One waiter's view of Toloka's availability: counts failed reads and paces the next one.

    :param what: what is being waited on, for the log lines (``operation 1a2b…``).
    :param log: where the two lines per outage go.
    :param min_wait: first pause after a failed read; it doubles (with jitter) towards ``max_wait``.
    :param max_wait: longest pause between reads during an outage: the wait's poll interval, so an
        outage never makes the wait read more often than it would anyway. ``Retry-After`` wins.
    """

    def __init__(self, what: str, log: Any, *, min_wait: float, max_wait: float) -> None:
        self.what = what
        self.log = log
        self.min_wait = min_wait
        self.max_wait = max_wait
        self.failures = 0
        self.began: float | None = None
        self.last_error: BaseException | None = None

    @property
    def ongoing(self) -> bool:
        return self.began is not None

    def fault(self, error: BaseException) -> float:
        """Record a failed read (logging it if it begins an outage); seconds to pause before the next."""
        if self.began is None:
            self.began = time.monotonic()
            self.log.warning(
                "Toloka is unavailable while waiting on %s (%s). The operation keeps running in Toloka: "
                "reading it again every %g s at most until it answers or the wait's time runs out.",
                self.what,
                describe_fault(error),
                self.max_wait,
            )
        self.failures += 1
        self.last_error = error
        return backoff_delay(
            self.failures,
            initial=self.min_wait,
            maximum=self.max_wait,
            retry_after=getattr(error, "retry_after", None),
        )

    def over(self) -> None:
        """A read got through: log the end of the outage, if there was one, and forget it."""
        if self.began is None:
            return
        self.log.info(
            "Toloka is available again while waiting on %s, after an outage of %.0f s (%d failed read(s); "
            "last fault: %s).",
            self.what,
            time.monotonic() - self.began,
            self.failures,
            describe_fault(self.last_error) if self.last_error else "none",
        )
        self.began, self.failures, self.last_error = None, 0, None
