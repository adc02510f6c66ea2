"""One account's request budget, shared by every task and triggerer through a store.

``requests_per_second`` alone is a pace each process keeps on its own (``throttle``): two cascades at 100
a second send 200 to an account that accepts 100, and a hand split (50/50) leaves half the budget idle
once one of them ends. With ``rate_limit_storage_uri`` set, every request from every process on that
account first takes one entry from a moving one-second window held in Redis, through the ``limits``
library's ``MovingWindowRateLimiter`` (an atomic Lua script per request, so no two processes can take
the same slot). Whoever needs the budget gets it; nobody's share sits idle.

The window is ``DECLARED_SPARE`` under the declared rate, as the per-process pace is, and keyed by a hash
of the API URL, the token and the acting account, so connections of one account share one budget and the
token itself never reaches the store. A process still keeps its own pace too: it is the ceiling anyway,
and it is what holds when the store cannot be asked.

The store's trouble never fails an archive. A call that fails or takes over ``STORE_TIMEOUT`` seconds
marks the store lost for ``RETRY_STORE_AFTER`` seconds; requests meanwhile go at the process's own pace.
The loss is logged once, and the return once, with the URI's password masked.

The window's timestamps are the clients' clocks (``limits`` sends ``time.time()``): hosts that share a
budget should keep their clocks in sync (NTP), as any Airflow deployment already must.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import threading
import time
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from limits import RateLimitItemPerSecond

        self.uri = uri
        self.shown = storage_uri.masked(uri)
        self.rate = rate
        self.key = key
        self._item = RateLimitItemPerSecond(max(1, math.floor(declared_pace(rate))))
        self._clock = clock
        self._lock = threading.Lock()
        self._limiter: Any = None
        self._down_until = -math.inf
        self.lost = False

    def take(self, sleep: Callable[[float], None] = time.sleep) -> float | None:
        """Block until the store grants one request; the seconds waited, ``None`` if the store failed."""
        started = self._clock()
        while True:
            delay = self._attempt()
            if delay is None:
                return None
            if delay == 0.0:
                waited = self._clock() - started
                metrics.budget_waited(waited)
                return waited
            sleep(delay)

    async def atake(self) -> float | None:
        """``take`` for an event loop: each store call in a thread, the waits on the loop."""
        started = self._clock()
        while True:
            delay = await asyncio.to_thread(self._attempt)
            if delay is None:
                return None
            if delay == 0.0:
                waited = self._clock() - started
                metrics.budget_waited(waited)
                return waited
            await asyncio.sleep(delay)

    def _attempt(self) -> float | None:
        """One try: ``0.0`` granted, a positive delay to try again after, ``None`` while the store is lost."""
        if self._clock() < self._down_until:
            return None
        try:
            limiter = self._open()
            if limiter.hit(self._item, "toloka", self.key):
                self._found()
                return 0.0
            stats = limiter.get_window_stats(self._item, "toloka", self.key)
        except Exception as error:  # any store trouble: the process's own pace holds meanwhile
            self._lose(error)
            return None
        self._found()
        # Until the window's oldest entry leaves it; the jitter keeps waiting processes from all asking
        # at the same instant.
        return max(stats.reset_time - time.time(), 0.001) + random.uniform(0, 1.0 / self._item.amount)

    def _open(self) -> Any:
        with self._lock:
            if self._limiter is None:
                from limits.storage import storage_from_string
                from limits.strategies import MovingWindowRateLimiter

                options: dict[str, Any] = {
                    "socket_timeout": STORE_TIMEOUT,
                    "socket_connect_timeout": STORE_TIMEOUT,
                }
                self._limiter = MovingWindowRateLimiter(storage_from_string(self.uri, **options))
            return self._limiter

    def _lose(self, error: BaseException) -> None:
        with self._lock:
            self._down_until = self._clock() + RETRY_STORE_AFTER
            if self.lost:
                return
            self.lost = True
        password = storage_uri.password(self.uri)
        reason = f"{type(error).__name__}: {error}"
        if password:
            reason = reason.replace(password, "***")
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


_budgets: dict[tuple[str, float, str], SharedBudget] = {}
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
    with _budgets_lock:
        budget = _budgets.get((uri, rate, key))
        if budget is None:
            budget = _budgets[(uri, rate, key)] = SharedBudget(uri, rate, key)
        return budget
