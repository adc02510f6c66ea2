"""One request pace shared by every thread of a task, so a 429 slows the whole task down.

Without it, each worker of a concurrent cascade backs off on its own: the others keep sending,
Toloka keeps refusing, and every 429 costs a request and a retry. ``SharedThrottle`` is consulted
by the hook before each request (``TolokaHook(throttle=...)``) and told about each answer:

- a 429 pauses every thread until its ``Retry-After`` (or one second) has passed, and
- it sets a pace just under the rate Toloka was accepting when it refused (answers seen in the
  last second, minus 10 %), so the task settles below the limit instead of bursting into it again.
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
        self._answers: collections.deque[float] = collections.deque()
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
                if self._resume_at <= time.monotonic():
                    return

    def after_response(self, status_code: int, retry_after: float | None) -> None:
        """Count an accepted answer, or on a 429 pause everyone and slow the pace by 10 %."""
        now = time.monotonic()
        with self._lock:
            while self._answers and self._answers[0] <= now - 1.0:
                self._answers.popleft()
            if status_code != 429:
                self._answers.append(now)
                return
            self.refusals += 1
            pause = self.default_pause if retry_after is None else retry_after
            self._resume_at = max(self._resume_at, now + pause)
            if self._rate is None:
                observed = len(self._answers) * self.headroom
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
