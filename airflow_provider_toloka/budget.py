"""One account's request budget, shared by every task and triggerer through a store.

``requests_per_second`` alone is a pace each process keeps on its own (``throttle``): two cascades at 100
a second send 200 to an account that accepts 100, and a hand split (50/50) leaves half the budget idle
once one of them ends. With ``rate_limit_storage_uri`` set, every request from every process on that
account first takes the next slot of one shared pace held in Redis: pyrate-limiter's GCRA
(``RedisStateStore``: one timestamp, the "theoretical arrival time", moved forward one interval per
request by an atomic Lua script, so no two processes can take the same slot). Whoever needs the budget
gets it, in the order they asked (a request reserves the next free slot and waits for it); nobody's share
sits idle.

A pace, not a count per second: the slots are ``1 / rate`` apart (burst 1), as the per-process pace is.
A window that lets a second's worth go at once (``limits``' moving window, tried first) sends bursts of
~100 that the network and Toloka reorder, and a limit counted over a sliding second then refuses some
(``benchmarks/bench_budget.py``: 39 429s after the first second). The pace keeps ``DECLARED_SPARE`` under
the declared rate, and is keyed by a hash of the API URL, the token and the acting account, so
connections of one account share it and the token itself never reaches the store. A process still keeps
its own pace too: the ceiling anyway, and what holds when the store cannot be asked.

The store's trouble never fails an archive. A call that fails or takes over ``STORE_TIMEOUT`` seconds
marks the store lost for ``RETRY_STORE_AFTER`` seconds; requests meanwhile go at the process's own pace.
The loss is logged once, and the return once, with the URI as ``storage_uri.masked`` shows it and the store's
password (``rate_limit_storage_password``) scrubbed from the error.

The slots are reckoned on the clients' clocks (pyrate-limiter passes the caller's wall time): hosts that
share a budget should keep their clocks in sync (NTP), as any Airflow deployment already must.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_toloka import metrics, storage_uri
from airflow_provider_toloka.throttle import declared_pace

if TYPE_CHECKING:
    from airflow_provider_toloka.connection import TolokaConnectionSettings

log = logging.getLogger(__name__)

# Seconds one store call may take before the process goes its own pace (Redis answers in a millisecond).
STORE_TIMEOUT = 1.0
# Seconds a lost store is left alone before it is asked again.
RETRY_STORE_AFTER = 5.0
# How long the store keeps the pace's state after its last request. Slots are reserved ahead (``_reserve``):
# the state must outlive the furthest one, which pyrate-limiter's default (two slots) would not.
KEEP_SLOTS_MS = 60_000


# From this declared rate, the shared pace lets one request go a slot early (burst 2): its 2 % spare is
# then two requests a second or more, one for that and one left for the network's jitter.
CATCH_UP_FROM = 100.0


def shared_rate(rate: float) -> Any:
    """The GCRA rate for a declared ``requests_per_second``: its pace, slots evenly spaced.

    A slot nobody takes in time is lost to a burst-1 pace, and a thread woken a few milliseconds late
    (a loaded worker) misses its slot at 100 a second: ``benchmarks/bench_budget.py`` kept to ~77. From a
    declared ``CATCH_UP_FROM`` the pace lets one request go a slot early, paid for by a pace one request
    a second slower: a sliding second then holds at most ``burst + rate`` = the pace + 1 requests, still
    under the declared rate. The interval is in hundredths of a request, exact to the microsecond.
    """
    from pyrate_limiter import Rate

    pace = declared_pace(rate)
    burst = 2 if rate >= CATCH_UP_FROM else 1
    return Rate(max(1, round((pace - (burst - 1)) * 100)), 100_000, burst=burst)


class SharedBudget:
    """A budget of ``rate`` requests a second in the store at ``uri``, for one account (``key``).

    Get it with ``budget_for(settings)``: one per process and account, so all of a process's threads and
    its event loop share one connection pool to the store. Thread-safe.
    """

    def __init__(
        self,
        uri: str,
        rate: float,
        key: str,
        *,
        password: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from pyrate_limiter import GCRA

        self.uri = uri
        self._password = password
        self.shown = storage_uri.masked(uri)
        self.rate = rate
        self.key = key
        self._rates = [shared_rate(rate)]
        self._algorithm = GCRA()
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = threading.Lock()
        self._async_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._store: Any = None
        self._down_until = -math.inf
        self._own_next = -math.inf  # this process's next slot of its own pace, while the store is lost
        self.lost = False

    def take(self, sleep: Callable[[float], None] = time.sleep, *, ahead: bool = False) -> float | None:
        """Wait for this request's slot of the shared pace: the seconds waited, ``None`` if the store failed.

        One thread of the process at a time reserves a slot and waits for it, the others queue here: each
        would otherwise hold a slot of its own far ahead, and a read that must not wait behind them
        (``ahead``: ``SharedThrottle.ahead``, the cascade's watcher) could not get in before them. So
        ``ahead`` skips that queue, as it skips the process's own: behind a hundred queued archives it
        would come a second late while their workers wait on it.
        """
        started = self._clock()
        with contextlib.nullcontext() if ahead else self._turn:
            wait = self._reserve()
            if wait is None:
                sleep(self._own_slot())
                return None
            if wait > 0:
                sleep(wait)
            waited = self._clock() - started
            metrics.budget_waited(waited)
            return waited

    async def atake(self) -> float | None:
        """``take`` for an event loop: the store call in a thread, the wait on the loop."""
        started = self._clock()
        async with self._async_turn():
            wait = await asyncio.to_thread(self._reserve)
            if wait is None:
                await asyncio.sleep(self._own_slot())
                return None
            if wait > 0:
                await asyncio.sleep(wait)
            waited = self._clock() - started
            metrics.budget_waited(waited)
            return waited

    def _own_slot(self) -> float:
        """Seconds until this process's next slot of its own pace, while the store is lost.

        The threads queued here for the store have each passed the process's pace already, but some time
        ago: let go together when the store fails, they would go as a burst. Paced here too (in series,
        one pace at the same rate as the other adds no wait of its own), they go on at the process's pace.
        """
        with self._lock:
            now = self._clock()
            start = max(now, self._own_next)
            self._own_next = start + 1.0 / declared_pace(self.rate)
            return start - now

    def _async_turn(self) -> asyncio.Lock:
        """The running loop's queue for the store (an ``asyncio.Lock`` belongs to one loop)."""
        loop = asyncio.get_running_loop()
        turn = self._async_turns.get(loop)
        if turn is None:
            turn = self._async_turns[loop] = asyncio.Lock()
        return turn

    def _reserve(self) -> float | None:
        """Reserve the next free slot: the seconds until it (``0.0``: now), ``None`` while the store is lost.

        First come, first served. Asked "may I go now?", the store tells everyone who was refused the same
        next slot, and whoever asks again first at that instant gets it: a tight loop in one process (or a
        process nearer the store) would take every slot while a trigger's read, a hop through the event
        loop behind, never got one (a reader starved for 5 s in CI). So a refused request asks again at
        once for the slot it was told of (GCRA checked at that future time, which spends the slot if it is
        still free) and then waits for it, its turn held in the store: later askers queue behind it.
        """
        if self._clock() < self._down_until:
            return None
        now = at = time.time_ns() // 1_000_000
        try:
            store = self._open()
            while True:
                decision = store.check(self._algorithm, self._rates, at, 1)
                if decision.allowed:
                    break
                # Taken meanwhile, or not yet asked for: the next free slot, counted from ``at``.
                at += max(decision.retry_after_ms or 1, 1)
        except Exception as error:  # any store trouble: the process's own pace holds meanwhile
            self._lose(error)
            return None
        self._found()
        return (at - now) / 1000

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                from pyrate_limiter import RedisStateStore

                from airflow_provider_toloka.store import redis_client

                client = redis_client(self.uri, timeout=STORE_TIMEOUT, password=self._password)
                self._store = RedisStateStore(client, f"toloka:budget:{self.key}", ttl_ms=KEEP_SLOTS_MS)
            return self._store

    def _lose(self, error: BaseException) -> None:
        with self._lock:
            self._down_until = self._clock() + RETRY_STORE_AFTER
            if self.lost:
                return
            self.lost = True
        reason = f"{type(error).__name__}: {error}"
        if self._password:
            reason = reason.replace(self._password, "***")
        log.warning(
            "Lost the shared request budget at %s (%s): this process keeps its own pace of %g requests a "
            "second until the store answers again (asked every %g s)",
            self.shown,
            reason,
            self.rate,
            RETRY_STORE_AFTER,
        )
        metrics.budget_store(available=False)

    def _found(self) -> None:
        if not self.lost:
            return
        with self._lock:
            if not self.lost:
                return
            self.lost = False
        log.warning("The shared request budget at %s answers again: requests draw on it again", self.shown)
        metrics.budget_store(available=True)


# One per store, rate, account and password. The password is in this process's own key only (a rotated one
# gets a fresh client); the store's key (``account_key``) never holds it.
_budgets: dict[tuple[str, float, str, str | None], SharedBudget] = {}
_budgets_lock = threading.Lock()


def account_key(settings: TolokaConnectionSettings) -> str:
    """Who the budget belongs to: one account on one API, whatever the connection id; no secret in it."""
    identity = "\n".join((settings.api_url, settings.token, settings.act_under_account_id or ""))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def budget_for(settings: TolokaConnectionSettings) -> SharedBudget | None:
    """The process's shared budget for the connection's account; ``None`` when it names no store."""
    uri, rate = settings.rate_limit_storage_uri, settings.requests_per_second
    if not uri or rate is None:
        return None
    key = account_key(settings)
    password = settings.rate_limit_storage_password
    with _budgets_lock:
        budget = _budgets.get((uri, rate, key, password))
        if budget is None:
            budget = _budgets[(uri, rate, key, password)] = SharedBudget(uri, rate, key, password=password)
        return budget
