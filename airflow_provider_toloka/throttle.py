"""One request pace shared by every thread of a task, so a 429 slows the whole task down.

Without it, each worker of a concurrent cascade backs off on its own: the others keep sending,
Toloka keeps refusing, and every 429 costs a request and a retry. ``SharedThrottle`` is consulted
by the hook before each request (``TolokaHook(throttle=...)``) and told about each answer:

- a 429 pauses every thread until its ``Retry-After`` (or one second) has passed, and
- it sets a pace just under the rate Toloka was accepting when it refused (requests sent in the
  last second that were not refused, minus 10 %; 10 % less again for each later second with a
  429), so the task settles below the limit instead of bursting into it again.
  The pace creeps back up by 2 % for each second without a 429, in case the refusal was someone
  else's burst on the same account.

Until the first 429 there is no pace at all: a task that never meets the limit never waits.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Protocol


class Throttle(Protocol):
    """What the hook asks of a throttle: wait for a turn, and hear how the request went."""

    def before_request(self) -> None: ...

    def after_response(self, status_code: int, retry_after: float | None) -> None: ...


class SharedThrottle:
    """A pause and an adaptive pace shared by all threads; safe to call from any thread.

    :param default_pause: seconds everyone waits after a 429 that carries no ``Retry-After``.
    :param headroom: share of the observed accepted rate to keep to after a 429 (0.9 = 10 % below).
    :param min_rate: a 429 met below this many answers a second is not about our pace (a quota, a
        fault): it pauses everyone but sets no pace.
    """

    def __init__(self, *, default_pause: float = 1.0, headroom: float = 0.9, min_rate: float = 10.0) -> None:
        self.default_pause = default_pause
        self.headroom = headroom
        self.min_rate = min_rate
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._next_slot = 0.0
        self._rate: float | None = None
        self._slowed_at = 0.0
        self._grown_at = 0.0
        self._sent: collections.deque[float] = collections.deque()
        self._refused_recently: list[float] = []
        self.refusals = 0

    @property
    def rate(self) -> float | None:
        """Requests per second currently kept to; ``None`` while no pace is needed."""
        return self._rate

    def before_request(self) -> None:
        """Block until this thread may send: after any pause, and one pace interval after the last send."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._grow_rate(now)
                start = max(now, self._resume_at, self._next_slot)
                if self._rate is not None:
                    self._next_slot = start + 1.0 / self._rate
            if start > now:
                time.sleep(start - now)
            with self._lock:
                # A 429 that arrived while this thread slept pauses it too.
                now = time.monotonic()
                if self._resume_at <= now:
                    self._sent.append(now)
                    return

    def after_response(self, status_code: int, retry_after: float | None) -> None:
        """On a 429, pause everyone and set or slow the pace; other answers need nothing."""
        if status_code != 429:
            return
        now = time.monotonic()
        with self._lock:
            while self._sent and self._sent[0] <= now - 1.0:
                self._sent.popleft()
            self.refusals += 1
            self._refused_recently = [t for t in self._refused_recently if t > now - 1.0] + [now]
            pause = self.default_pause if retry_after is None else retry_after
            self._resume_at = max(self._resume_at, now + pause)
            if self._rate is None:
                observed = (len(self._sent) - len(self._refused_recently)) * self.headroom
                if observed >= self.min_rate:
                    self._rate, self._slowed_at = observed, now
            elif now - self._slowed_at >= 1.0:
                # One slow-down per second: the 429s of one burst arrive together and count once.
                self._rate = max(self.min_rate, self._rate * self.headroom)
                self._slowed_at = now

    def _grow_rate(self, now: float) -> None:
        if self._rate is not None and now - max(self._slowed_at, self._grown_at) >= 1.0:
            self._rate *= 1.02
            self._grown_at = now
