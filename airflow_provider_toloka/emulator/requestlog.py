"""What the emulator was asked, so tests can assert on a client's traffic (retries, polling, back-off)."""

from __future__ import annotations

import threading
from typing import NamedTuple


class RequestRecord(NamedTuple):
    """One request as the client met it: ``status`` is what it received, 0 when the connection was dropped."""

    method: str
    path: str
    status: int
    time: float  # time.time() when the request arrived
    duration: float  # seconds until the answer (or the drop), latency and slow faults included
    account: str | None = None  # the X-Act-Under-Account-ID header, if the request carried one
    # The emulator's own time when it arrived (Unix seconds): ``time`` plus every ``advance_clock``, so
    # a test on the movable clock can say when, in that time, each request came.
    emulator_time: float = 0.0
    user_agent: str | None = None  # the User-Agent header: which client sent it, where several share one


class RequestLog:
    """Append-only, copied on read: the server thread appends while test threads read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
