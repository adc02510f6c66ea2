"""Riding out a run of transient faults while waiting on an operation that already exists.

Once Toloka has an operation, waiting on it only reads, and a read that fails with a 429, a 5xx, a dropped
connection or a time-out can simply be tried again later: nothing is started twice. So a wait should
survive an outage for as long as its own deadline allows, instead of giving up after a fixed number of
attempts. What such a wait must not do is flood the log with one warning per attempt: ``Outage`` says once
that Toloka cannot be read, and once that it can again, with how long it lasted.

Requests that start something (archive, close) keep their bounded retries (``retry.retry_policy``).
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_toloka.retry import backoff_delay, describe_fault


class Outage:
    """One waiter's view of Toloka's availability: logs the start and the end of a run of faults, once each.

    Call ``failed(error)`` after a transient fault: it returns the seconds to wait before the next try
    (exponential from ``min_wait`` towards ``max_wait``, or the ``Retry-After`` Toloka sent) and logs a
    warning only for the first fault of a run. Call ``recovered()`` after a good answer: it logs the end of
    the run, if one was going on, and resets the back-off.

    :param what: what is being read, for the log lines (e.g. ``"operation 1f0e…"``, ``"3 operations"``).
    :param log: a ``logging.Logger``-like object (a hook's or trigger's ``self.log``).
    :param min_wait: first back-off delay in seconds.
    :param max_wait: longest back-off delay in seconds; a wait passes its ``poll_interval`` here, so a
        long outage costs no more requests than the wait itself would.
    """

    def __init__(self, what: str, log: Any, *, min_wait: float = 1.0, max_wait: float = 10.0) -> None:
        self.what = what
        self.log = log
        self.max_wait = max_wait
        self.min_wait = min(min_wait, max_wait)
        self.attempts = 0
        self.since: float | None = None
        self.last_fault = ""

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> float:
        """Record a transient fault; the seconds to wait before trying again."""
        self.attempts += 1
        self.last_fault = describe_fault(error)
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning(
                "Toloka cannot be read for %s (%s); still waiting, retrying until the wait's deadline",
                self.what,
                self.last_fault,
            )
        return backoff_delay(
            self.attempts,
            initial=self.min_wait,
            maximum=self.max_wait,
            retry_after=getattr(error, "retry_after", None),
        )

    def recovered(self) -> None:
        """A good answer: log the end of the outage, if there was one, and reset the back-off."""
        if self.since is not None:
            self.log.warning(
                "Toloka answers again for %s after %.1f s and %d failed attempts (last fault: %s)",
                self.what,
                time.monotonic() - self.since,
                self.attempts,
                self.last_fault,
            )
        self.attempts = 0
        self.since = None

    def describe(self) -> str:
        """A clause for a time-out message when the deadline passed during the outage, else ``""``."""
        if self.since is None:
            return ""
        return (
            f" Toloka could not be read for the last {time.monotonic() - self.since:.0f} s "
            f"({self.attempts} failed attempts; last fault: {self.last_fault})."
        )
