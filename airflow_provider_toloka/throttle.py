"""One request pace shared by every thread of a task, so a 429 slows the whole task down.

Without it, each worker of a concurrent cascade backs off on its own: the others keep sending,
Toloka keeps refusing, and every 429 costs a request and a retry. ``SharedThrottle`` is consulted
by the hook before each request (``TolokaHook(throttle=...)``) and told about each answer:

- a 429 pauses every thread until its ``Retry-After`` (or one second) has passed, and
- when the pause ends, the task keeps to a pace 5 % under what Toloka accepted in the second before
  the 429: that count is the account's limit as Toloka applies it (other clients' traffic included),
  so the task settles just below it instead of bursting into it again.

The count is taken when the pause ends, not when the first 429 arrives: a burst's refusals come
back before many of its accepted answers, and counting early would set the pace far too low.
Threads that waited out a pause take their slots after it, one pace interval apart, and no second
holds more than a second's worth of sends, even when the CPU wakes many threads late at once.
The pace only goes down: probing upwards is what costs a 429 and a whole paused second each time.
``benchmarks/bench_cascade.py`` prints how often a cascade meets the limit and how its time compares
with what the rate limit allows; with this rule it meets the limit once, with the first burst.

Until the first 429 there is no pace at all: a task that never meets the limit never waits.

A connection that declares its ``requests_per_second`` skips the learning: ``keep_to`` sets the pace
before the first request, so the task never bursts into the limit at all (a 429 from someone else's
traffic still pauses and lowers it as above). ``AsyncPacer`` is the same declared pace for the
triggerer's shared reader, on its event loop. Nothing in the dependency set paces requests (tenacity
only retries them), and the slot logic is already here, so the pacer is a few lines more of it.

A declared pace keeps ``DECLARED_SPARE`` (2 %) below the rate: sent exactly at a limit counted over a
sliding second (the emulator's way; Toloka does not document its own), request ``n + 1`` goes out exactly
a second after request 1, and arriving a millisecond early is a 429. Two per cent keeps any ``n + 1``
sends at least 20 ms further apart than that.
No second's sends go over the declared rate itself, however late threads wake (the cap above).

``ahead()`` lets one thread's requests skip the queue of threads holding later slots: the cascade's
watcher reads through it (``cascade/watch.py`` says why), and so does the triggerer's shared reader while it
reads a deferred cascade's operations (``turn_ahead``). Each such request still moves the next free slot back
by one pace interval, so the pace holds on average.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

# Share of a declared rate left unused, for the network's jitter (see the module's docstring).
DECLARED_SPARE = 0.02


def declared_pace(rate: float) -> float:
    """Requests a second actually kept to for a declared ``requests_per_second``."""
    return rate / (1 + DECLARED_SPARE)


class Throttle(Protocol):
    """What the hook asks of a throttle: wait for a turn, and hear how the request went."""

    def before_request(self) -> None: ...

    def after_response(self, status_code: int, retry_after: float | None) -> None: ...

    def keep_to(self, rate: float) -> None: ...

    def ahead(self) -> contextlib.AbstractContextManager[None]: ...


class SharedThrottle:
    """A pause and a pace shared by all threads; safe to call from any thread.

    :param default_pause: seconds everyone waits after a 429 that carries no ``Retry-After``.
    :param headroom: share of the accepted rate to keep to after a 429 (0.95 = 5 % below).
    :param min_rate: a 429 met below this many accepted answers a second is not about our pace (a
        quota, a fault): it pauses everyone but sets no pace.
    """

    def __init__(self, *, default_pause: float = 1.0, headroom: float = 0.95, min_rate: float = 10.0) -> None:
        self.default_pause = default_pause
        self.headroom = headroom
        self.min_rate = min_rate
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._next_slot = 0.0
        self._rate: float | None = None
        # The most ``_sent`` may hold: the declared rate, or the pace learned from a 429.
        self._limit: float | None = None
        self._refused_at: float | None = None  # first 429 of the current pause
        self._accepted: collections.deque[float] = collections.deque()  # answers other than 429
        self._sent: collections.deque[float] = collections.deque()  # sends in the last second
        self.refusals = 0
        self._local = threading.local()  # .ahead: this thread's requests skip the queue (``ahead``)

    def keep_to(self, rate: float) -> None:
        """Pace every request from now on to the connection's declared ``requests_per_second``."""
        pace = declared_pace(rate)
        with self._lock:
            self._rate = pace if self._rate is None else min(pace, self._rate)
            self._limit = rate if self._limit is None else min(rate, self._limit)

    @contextlib.contextmanager
    def ahead(self) -> Iterator[None]:
        """Requests this thread sends inside go before every thread queued for a slot.

        For reads that free the others: the cascade's workers each hold a slot of ``max_concurrency``
        until the watcher's read sees their operation finished. Queued behind the archives those
        workers are waiting to send (a hundred of them, a second at 100 requests a second), that read
        comes late, slots stay held, and the task keeps to less than its pace. A read sent ahead still
        pays for its turn: it moves the next free slot back by one pace interval, and it waits out a
        pause and a full second like any other request.
        """
        self._local.ahead = True
        try:
            yield
        finally:
            self._local.ahead = False

    @property
    def is_ahead(self) -> bool:
        """Whether the calling thread is inside ``ahead()`` (the shared budget lets it skip its queue too)."""
        return bool(getattr(self._local, "ahead", False))

    @property
    def rate(self) -> float | None:
        """Requests per second currently kept to; ``None`` while no pace is needed."""
        return self._rate

    def before_request(self) -> None:
        """Block until this thread may send: after any pause, and one pace interval after the last send
        (inside ``ahead``: at once, moving the next free slot back instead)."""
        for pause in self._turn(ahead=getattr(self._local, "ahead", False)):
            time.sleep(pause)

    async def turn_ahead(self) -> None:
        """``before_request`` inside ``ahead`` for a coroutine: the triggerer's shared reader takes its
        turns here while it reads a deferred cascade's operations, so the cascade's archives and the reads
        that free its workers keep one pace together, as the worker's watcher does (``AsyncPacer.join``)."""
        for pause in self._turn(ahead=True):
            await asyncio.sleep(pause)

    def _turn(self, *, ahead: bool) -> Iterator[float]:
        """The pauses to sleep, one after the other, until a request may go (then it is recorded as sent)."""
        while True:
            with self._lock:
                now = time.monotonic()
                if self._refused_at is not None and now >= self._resume_at:
                    self._set_pace()
                paused = now < self._resume_at
                if paused:
                    # Take a slot only once the pause is over: the pace is set then, and threads that
                    # all waited out the same pause must not all go at once.
                    start = self._resume_at
                elif ahead:
                    start = now
                else:
                    start = max(now, self._next_slot)
                    if self._rate is not None:
                        self._next_slot = start + 1.0 / self._rate
            if start > now:
                yield start - now
            if paused:
                continue
            if self._send_now(pays_for_turn=ahead):
                return
            if ahead:  # the last second is full: try again once its oldest send has aged a little
                yield 1.0 / (self._limit or 1.0)

    def _send_now(self, *, pays_for_turn: bool = False) -> bool:
        """Whether a thread whose slot has come may send, recording it if so.

        Not if a 429 arrived while it waited, nor if the last second already holds what Toloka accepts
        in one: threads that the CPU woke late for their slots would otherwise go together. The check is
        against the limit, not the pace kept under it: against the pace it would turn away threads that
        are merely a little late, and each one turned away gives up its slot, so the task would keep to
        less than its pace.
        """
        with self._lock:
            now = time.monotonic()
            while self._sent and self._sent[0] <= now - 1.0:
                self._sent.popleft()
            if self._resume_at > now or (self._limit is not None and len(self._sent) >= self._limit):
                return False
            self._sent.append(now)
            if pays_for_turn and self._rate is not None:
                self._next_slot = max(self._next_slot, now) + 1.0 / self._rate
            return True

    def after_response(self, status_code: int, retry_after: float | None) -> None:
        """Count accepted answers; on a 429, pause everyone (the pace is set when the pause ends)."""
        now = time.monotonic()
        with self._lock:
            if status_code != 429:
                self._accepted.append(now)
                # Keep the second before the current pause, or the last second outside one.
                horizon = (now if self._refused_at is None else self._refused_at) - 1.0
                while self._accepted and self._accepted[0] < horizon:
                    self._accepted.popleft()
                return
            self.refusals += 1
            pause = self.default_pause if retry_after is None else retry_after
            self._resume_at = max(self._resume_at, now + pause)
            if self._refused_at is None:
                self._refused_at = now

    def _set_pace(self) -> None:
        """End of a pause: the answers to requests sent before it are in, so count what Toloka accepted."""
        assert self._refused_at is not None
        horizon = self._refused_at - 1.0
        accepted = sum(1 for at in self._accepted if at >= horizon)
        self._refused_at = None
        if accepted >= self.min_rate:
            rate = accepted * self.headroom
            self._rate = rate if self._rate is None else min(rate, self._rate)
            # A count taken around a burst is rough: sends stay within the pace kept, not the count.
            self._limit = rate if self._limit is None else min(rate, self._limit)


class AsyncPacer:
    """A declared pace for the requests of one event-loop reader (``triggers/reader.py``).

    One coroutine runs at a time on a loop and nothing awaits between reading and taking a slot, so no
    lock is needed. ``rate=None`` lets every request go at once (the reader backs off on 429 itself).

    While a deferred cascade waits through the reader, the reader's requests also take their turns from the
    cascade's ``SharedThrottle`` (``join``): they read the cascade's operations, so they count against its
    pace.

    :param clock: seconds, monotonic; ``sleep`` waits them (both injectable for tests).
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._joined: collections.Counter[SharedThrottle] = collections.Counter()

    def join(self, throttle: SharedThrottle) -> None:
        """Take a turn from ``throttle`` too before each request, until as many ``leave`` calls."""
        self._joined[throttle] += 1

    def leave(self, throttle: SharedThrottle) -> None:
        self._joined[throttle] -= 1
        if self._joined[throttle] <= 0:
            del self._joined[throttle]

    async def wait(self) -> None:
        """Return when this request may go: one pace interval after the one before."""
        if self.rate is not None:
            now = self._clock()
            start = max(now, self._next_slot)
            self._next_slot = start + 1.0 / declared_pace(self.rate)
            if start > now:
                await self._sleep(start - now)
        for throttle in list(self._joined):
            await throttle.turn_ahead()
