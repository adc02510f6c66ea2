"""Trouble on demand: queued faults and a requests-per-second limit, both checked before any route runs.

Each has its own small lock, separate from the state's, because they are consulted on every request and never
touch the model.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# "400" and "403" are refusals a client must not retry; the rest are the transient trouble it must survive.
FAULT_KINDS = ("400", "403", "429", "500", "502", "503", "504", "drop", "slow")
# A 429's ``payload.interval``, as toloka-kit reads it: the quota that ran out. None: the per-second limit.
QUOTAS = ("MIN", "HOUR", "DAY")


@dataclass
class Fault:
    """One queued rule: the next ``remaining`` requests matching ``path``/``method`` get ``kind``."""

    kind: str
    remaining: int
    path: str | None = None
    method: str | None = None
    retry_after: float | None = None
    delay: float = 1.0
    # "after": a drop that lets the request through first, so its effect happens but the answer is lost.
    when: str = "before"
    quota: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path in path
        )


class FaultPlan:
    """The queue of faults; the first matching rule with requests left wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {fault.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if fault.when not in ("before", "after") or (fault.when == "after" and fault.kind != "drop"):
            raise ValueError('when="after" exists only for kind "drop"; other faults replace the handler')
        if fault.quota is not None and (fault.kind != "429" or fault.quota not in QUOTAS):
            quotas = ", ".join(QUOTAS)
            raise ValueError(f'quota={fault.quota!r}: give it with kind "429" only, one of {quotas}')
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first rule matching this request, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class RateLimiter:
    """A sliding one-second window over accepted requests; ``limit=None`` lets everything through.

    Refused requests do not count, so a client that backs off gets in again after a second, as with Toloka.
    The second is the emulator's (``clock``): ``advance_clock`` moves the window on, and on a stopped clock
    the limit counts requests, not time, so a test of a burst does not depend on how fast the machine is.
    """

    def __init__(self, limit: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._accepted: collections.deque[float] = collections.deque()

    def allow(self) -> bool:
        limit = self.limit
        if limit is None:
            return True
        now = self.clock()
        with self._lock:
            while self._accepted and self._accepted[0] <= now - 1.0:
                self._accepted.popleft()
            if len(self._accepted) >= limit:
                return False
            self._accepted.append(now)
            return True
