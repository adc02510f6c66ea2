"""One reader of Toloka operations per event loop and connection, for every trigger waiting there.

In the triggerer this reader is the one way operations are waited on: deferred cascades and housekeeping
runs wait on theirs here too (``triggers/engine_watcher.py`` bridges the engine's threads to the loop), so
they are read by page with every other wait of the loop.

Why not ``cascade/watch.py``, which also reads operations by page: that watcher is the worker's, for the
cascade of a task that holds no event loop; it blocks its threads and reads through the task's sync hook
and throttle. Here many unrelated triggers share one event loop and must never block it, each with its own
pace and deadline.

A trigger polling its own operation costs Toloka one request per ``poll_interval``: a thousand deferred
archives cost 100 requests a second, a third of an account's limit, for as long as they wait. Here the
triggers of one loop register their operation with the loop's ``OperationReader`` and await its end. The
reader reads them all by page:

- ``GET /operations?status=PENDING&sort=id&limit=300`` then the same for ``RUNNING``, per waited type
  (``type=POOL.ARCHIVE`` …; no type while some operation's type is still unknown), paged with ``id_gt``.
  A thousand waits cost ~6 requests per poll, not 1000.
- A waited operation that no page showed as PENDING or RUNNING has most likely ended. When a type has
  several, one page of its newest SUCCESS operations (``sort=-submitted``) may show them; the rest are
  read one by one (``GET /operations/{id}``), which is also how a FAIL operation gets its log.
- An operation that a page shows in a state it cannot be in (a status other than the one listed, or one
  that goes backwards) is read on its own too, so correctness never depends on the list.

When only a few operations are due (a trigger that just started wants its first read after half a second),
reading them one by one is cheaper than the pages, and the reader does that instead: each round costs
whichever is fewer requests. The pace is today's promise, kept per trigger: a read half a second after it
starts, then twice as long each time up to its ``poll_interval``; a trigger that reached its
``poll_interval`` joins the group read every (shortest) ``poll_interval``. So a burst of new triggers costs
one round, not one read each. While operations are ending (the last sweep missed some), the group is read
every half ``poll_interval``: the pages cost little next to the single reads the ended operations need
anyway, and each round then has half as many to read, so events come sooner (``benchmarks/bench_trigger.py``
prints the event delays when thousands of waits end together).

Faults hit the shared read once, for everyone. A transient one (429, 5xx, a dropped or timed-out
connection) stops the round and the reader tries again after the back-off of ``outage.Outage`` (equal
jitter; a ``Retry-After`` wins), for as long as each trigger's deadline allows; the outage is logged when
it starts and when it ends. A refusal of a list falls back to reading the due operations one by one, so a
wait that a single read would survive never fails; a refusal of one operation's read (404, 401, …) ends
that wait.

A connection that declares ``requests_per_second`` has each reader keep to it (``throttle.AsyncPacer``):
the rounds' list pages and single reads go out one pace interval apart, never as a burst. It is the
reader's own pace: the account's budget is split between tasks and triggerers in ``docs/deployment.md``.
While a deferred cascade waits here, each request also takes a turn of that cascade's ``SharedThrottle``
(``AsyncPacer.join``), so the cascade's archives and the reads of them keep its pace together.

The reader runs as an asyncio task from its first trigger and closes with its last one, cancelled or not;
a deferred cascade keeps it open for as long as its engine runs (``kept_open``), between its waits too.
It holds the loop's shared HTTP client (``hooks.toloka_async``) and re-reads the connection every
``MAX_AGE`` seconds, so a rotated token reaches it as it reaches the client.

Readers are per connection, so two connections that differ only in ``act_under_account_id`` never share one:
an operation is read under the account that started it. Should a re-read find the connection's account
changed, the reader keeps its client for the waits it has (their operations belong to the old account) and
leaves the registry, so triggers from then on get a reader of their own under the new account.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow.exceptions import AirflowException

from airflow_provider_toloka import metrics
from airflow_provider_toloka.connection import TolokaConnectionSettings
from airflow_provider_toloka.exceptions import TolokaApiError, TolokaError
from airflow_provider_toloka.hooks.toloka_async import OWN_ACCOUNT, TolokaAsyncHook, read_settings
from airflow_provider_toloka.operation_status import OperationStatus, operation_status, poll_delays
from airflow_provider_toloka.outage import Outage
from airflow_provider_toloka.retry import DEFAULT_RETRY_MIN_WAIT
from airflow_provider_toloka.throttle import AsyncPacer

log = logging.getLogger(__name__)

# Listed in this order: an operation that starts running between the two reads is still in the second.
ACTIVE = (OperationStatus.PENDING, OperationStatus.RUNNING)
_RANK = {OperationStatus.PENDING: 0, OperationStatus.RUNNING: 1}
# Triggers due this soon are read with the current round rather than in a round of their own.
SLACK = 0.25
# Each operation read wakes its triggers, and a trigger that ends runs its event out: done for thousands in
# one go, that stalled the loop for seconds in benchmarks/bench_trigger.py. So the reader lets the loop run
# every YIELD_EVERY operations it applies.
YIELD_EVERY = 100


def clock() -> float:
    """The reader's time (Unix seconds): the wall clock.

    With ``timed_wait`` the one seam to the real clock, so a test can run the reader on another time (the
    emulator's movable clock, ``tests/triggers/test_reader.py``) and check its pace exactly, however
    loaded the machine.
    """
    return time.time()


async def timed_wait(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or after ``seconds``, whichever comes first (see ``clock``)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended: ``ended`` (SUCCESS or FAIL, with the log), ``timeout``, ``error``, or ``moved``.

    ``operation`` is Toloka's last answer about it (``None`` if never read); ``message`` says why for an
    ``error``, and for a ``timeout`` whether Toloka could not be read when the deadline passed. ``moved``:
    the wait joined after the connection's account changed; its trigger registers with the reader of the
    new account (``shared_reader``) and goes on waiting.
    """

    kind: Literal["ended", "timeout", "error", "moved"]
    operation: dict[str, Any] | None
    message: str = ""
    # The refusal that ended an ``error`` wait, when one did: a waiter that may wait out an HOUR or DAY
    # quota (the cascade's, ``triggers/engine_watcher.py``) needs the quota, not only its text.
    error: BaseException | None = None


@dataclass(eq=False)
class Waiter:
    """One trigger's registration: what it waits on, when it wants its next read, and what was seen."""

    operation_id: str
    poll_interval: float
    end_time: float | None
    delays: Iterator[float]
    due: float
    graduated: bool = False  # reached its poll_interval: read with the group
    seen: dict[str, Any] | None = None
    outcome: WaitOutcome | None = None
    news: asyncio.Event = field(default_factory=asyncio.Event)  # set on every read and at the end

    @property
    def deadline(self) -> float:
        return math.inf if self.end_time is None else self.end_time


class OperationReader:
    """The loop's reader for one connection; get it with ``shared_reader(conn_id)``, never build it."""

    def __init__(self, conn_id: str, registry: dict[str, OperationReader]) -> None:
        self.conn_id = conn_id
        self.closed = False
        self._registry = registry
        self._waiters: set[Waiter] = set()
        self._by_id: dict[str, set[Waiter]] = defaultdict(set)
        self._types: dict[str, str] = {}  # operation id -> type, once read
        self._pages: dict[tuple[str | None, OperationStatus], int] = {}  # pages each listing took last time
        self._group_due: float | None = None
        self._changed = asyncio.Event()
        self._wake_at = -math.inf  # while a round runs, a new trigger need not wake the reader
        self._retry_at = 0.0
        # The account this reader reads under (set by its first read of the connection); once the
        # connection's account changes, the reader is pinned to it for the waits it holds.
        self._account: str | None = None
        self._pinned = False
        self._unchecked: set[Waiter] = set()  # joined since the connection was last read
        # A 401: read the connection again (the token may have been rotated) before it ends any wait;
        # once re-read with no new token, the next 401 ends them.
        self._token_suspect = False
        self._token_rechecked = False
        self._list_refused = False
        self._ending = False  # the last sweep missed waited operations: they are ending, read sooner
        self.outage = Outage(f"the operations waited on through connection {conn_id!r}", log)
        # Every request of this reader, whichever client it goes through, keeps one declared pace.
        self.pacer = AsyncPacer()
        self._holds = 0  # ``kept_open``: runs that wait here again and again, with gaps between their waits
        self.served = 0
        self.list_reads = 0
        self.single_reads = 0
        # A fresh context: Airflow's triggerer routes a log line to the task whose trigger_id is in the
        # context, and the reader, serving every trigger, belongs to none (its lines go to the triggerer's).
        self._task = contextvars.Context().run(asyncio.ensure_future, self._run())

    # --- what triggers call -----------------------------------------------------------------------

    def add(
        self, operation_id: str, poll_interval: float, end_time: float | None, op_type: str | None = None
    ) -> Waiter:
        """Register a wait. ``op_type`` (``POOL.ARCHIVE`` …), when the caller knows it from starting the
        operation, lets the reader list it by type from its first round, and read it by page once it ended."""
        delays = poll_delays(poll_interval)
        waiter = Waiter(operation_id, poll_interval, end_time, delays, due=clock() + next(delays))
        self._waiters.add(waiter)
        self._by_id[operation_id].add(waiter)
        if op_type:
            self._types.setdefault(operation_id, op_type)
        if not self._pinned:
            self._unchecked.add(waiter)
        self.served += 1
        metrics.gauge("reader.waits", len(self._waiters))
        if self._due(waiter) < self._wake_at:
            self._changed.set()
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Forget a waiter (its trigger ended or was cancelled); the last one closes the reader."""
        self._forget(waiter)
        metrics.gauge("reader.waits", len(self._waiters))
        self._close_if_idle()

    async def follow(self, waiter: Waiter, on_news: Callable[[], None]) -> WaitOutcome:
        """Await the end of ``waiter``'s wait, calling ``on_news`` after each round that told it something.

        Ended or cancelled (a trigger cleared or stopping, a cascade aborted), the reader forgets the wait
        at once: its operation is read no more.
        """
        try:
            while waiter.outcome is None:
                await waiter.news.wait()
                waiter.news.clear()
                on_news()
        finally:
            self.remove(waiter)
        return waiter.outcome

    @contextlib.contextmanager
    def kept_open(self) -> Iterator[None]:
        """Keep the reader open inside, waits or not: a deferred cascade's waits come one after another
        (the archive of a training once its pools are), and each would otherwise find the reader closed and
        start a new one, which reads the connection again."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self._waiters or self._held:
            return
        if not self.closed:
            self._retire()
            self._task.cancel()
        else:
            self._changed.set()  # a reader retired early (its account changed) ends on its own

    @property
    def _held(self) -> bool:
        """Kept open (``kept_open``), unless it retired: then only its own waits keep it running."""
        return self._holds > 0 and not self.closed

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # --- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        hook: TolokaAsyncHook | None = None
        try:
            try:
                # Read afresh: the loop's shared client may predate a change of the connection.
                hook = await self._open(await read_settings(self.conn_id))
                self._unchecked.clear()  # every wait so far is read under what was just read
            except ValueError as error:  # the connection is there but not usable: the parser says why
                self._fail_all(str(error))
                return
            except AirflowException as error:  # AirflowNotFoundException, secrets-backend failures
                self._fail_all(f"Cannot read connection {self.conn_id!r}: {error}")
                return
            while self._waiters or self._held:
                await self._sleep()
                if not self._waiters:
                    break
                hook = await self._renewed(hook)
                await self._round(hook)
        except Exception as error:  # a bug here must not leave thousands of triggers waiting forever
            log.exception("The shared reader of Toloka operations stopped")
            self._fail_all(f"The shared reader of Toloka operations stopped: {error!r}")
        finally:
            self._retire()
            log.info(
                "Shared reader of Toloka operations for connection %r closed: %d waits served with %d list "
                "pages and %d single reads",
                self.conn_id,
                self.served,
                self.list_reads,
                self.single_reads,
            )
            if hook is not None:
                await hook.__aexit__(None, None, None)

    async def _open(self, settings: TolokaConnectionSettings | None = None) -> TolokaAsyncHook:
        # One attempt per request: the reader rides out faults itself, for as long as the deadlines allow.
        # Pinned, it keeps its own account whatever the connection says now (the token is the new one).
        account = self._account if self._pinned else OWN_ACCOUNT
        hook = TolokaAsyncHook(
            self.conn_id, max_retries=0, pacer=self.pacer, settings=settings, account=account
        )
        await hook.__aenter__()
        if self._account is None:
            self._account = hook.settings.act_under_account_id
        self.pacer.rate = hook.settings.requests_per_second  # the connection may have changed
        return hook

    async def _renewed(self, hook: TolokaAsyncHook) -> TolokaAsyncHook:
        """The client to read with this round: the connection read again once the current one is
        ``MAX_AGE`` old (a rotated token), and before the first read of waits that joined since the last
        read (so a changed account never reaches them). Pinned, the reader keeps re-reading too: a token
        rotated after the account changed still reaches its waits."""
        if not hook.expired and not self._unchecked and not self._token_suspect:
            return hook
        joined, self._unchecked = self._unchecked, set()
        if self._token_suspect:
            self._token_suspect, self._token_rechecked = False, True
        try:
            settings = await read_settings(self.conn_id)
        except (ValueError, AirflowException) as error:
            log.warning(
                "Could not re-read connection %r, keeping the current client: %s", self.conn_id, error
            )
            return hook
        if not self._pinned and settings.act_under_account_id != self._account:
            log.warning(
                "Connection %r now acts under another account: its %d current waits keep their own, "
                "%d that joined since move to a reader of the new account",
                self.conn_id,
                len(self._waiters) - len(joined),
                len(joined),
            )
            self._pinned = True
            self._retire()
            for waiter in joined:
                self._resolve(waiter, WaitOutcome("moved", waiter.seen))
            if not hook.expired:
                return hook
        elif not hook.expired and (settings.token, settings.api_url) == (
            hook.settings.token,
            hook.settings.api_url,
        ):
            return hook  # only new waits to check, and nothing changed
        try:
            fresh = await self._open(settings)
        except (ValueError, AirflowException) as error:
            log.warning(
                "Could not open a new client for %r, keeping the current one: %s", self.conn_id, error
            )
            return hook
        await hook.__aexit__(None, None, None)
        return fresh

    async def _sleep(self) -> None:
        while self._waiters or self._held:
            if not self._waiters:  # kept open with nothing to read: until a wait joins or the hold ends
                self._wake_at = math.inf
                self._changed.clear()
                await self._changed.wait()
                continue
            now = clock()
            wake = self._next_wake()
            if wake <= now:
                break
            self._wake_at = wake
            self._changed.clear()
            await timed_wait(self._changed, wake - now)
        self._wake_at = -math.inf

    def _next_wake(self) -> float:
        due = min(self._due(waiter) for waiter in self._waiters)
        if not self.outage.active:
            return due
        return min(max(due, self._retry_at), min(waiter.deadline for waiter in self._waiters))

    def _due(self, waiter: Waiter) -> float:
        due = self._group_due if waiter.graduated and self._group_due is not None else waiter.due
        return min(due, waiter.deadline)

    async def _round(self, hook: TolokaAsyncHook) -> None:
        now = clock()
        if self.outage.active and now < self._retry_at:
            self._expire(now)  # woken for a deadline during an outage
            return
        # A wait that joined while the connection was being read is read only once the next round has
        # checked its account (``_renewed``).
        due = {
            waiter.operation_id
            for waiter in self._waiters - self._unchecked
            if self._due(waiter) <= now + SLACK
        }
        group_due = self._group_due is not None and self._group_due <= now + SLACK
        if not due:
            return
        try:
            swept = await self._read(hook, due, now)
        except Exception as error:
            if not hook.is_transient(error):
                raise
            intervals = [waiter.poll_interval for waiter in self._waiters] or [DEFAULT_RETRY_MIN_WAIT]
            self.outage.max_wait = min(intervals)
            self.outage.min_wait = min(DEFAULT_RETRY_MIN_WAIT, self.outage.max_wait)
            starting = not self.outage.active
            self._retry_at = clock() + self.outage.failed(error)
            self._expire(clock())
            if starting:
                self._tell_all()
            return
        if self.outage.active:
            self.outage.recovered()
            self._tell_all()
        if swept or group_due:
            intervals = [waiter.poll_interval for waiter in self._waiters if waiter.graduated]
            self._group_due = now + min(intervals) / (2 if self._ending else 1) if intervals else None

    async def _read(self, hook: TolokaAsyncHook, due: set[str], now: float) -> bool:
        """Read the due operations, one by one or by sweeping every waited one: whichever costs less."""
        if len(due) <= self._sweep_cost():
            await self._read_each(hook, due, now)
            return False
        try:
            await self._sweep(hook, now)
        except TolokaError as error:
            if hook.is_transient(error):
                raise
            if not self._list_refused:
                log.warning("Toloka refused a list of operations, reading them one by one: %s", error)
                self._list_refused = True
            await self._read_each(hook, self._checked_ids(), now)
        return True

    def _checked_ids(self) -> set[str]:
        """The waited operations with a wait whose account was checked (every one, but the newest)."""
        return {operation_id for operation_id, waiters in self._by_id.items() if waiters - self._unchecked}

    def _listings(self) -> list[str | None]:
        """The types to list; ``None`` (every type) while some waited operation was never read."""
        types: set[str | None] = set()
        for operation_id in self._by_id:
            op_type = self._types.get(operation_id)
            if op_type is None:
                return [None]
            types.add(op_type)
        return sorted(types, key=str)

    def _sweep_cost(self) -> int:
        return sum(self._pages.get((op_type, status), 1) for op_type in self._listings() for status in ACTIVE)

    async def _sweep(self, hook: TolokaAsyncHook, now: float) -> None:
        waited = self._checked_ids()
        listed: dict[str, dict[str, Any]] = {}
        for op_type in self._listings():
            for status in ACTIVE:
                id_gt: str | None = None
                pages = 0
                while True:
                    page = await hook.list_operations(
                        status=status.value, sort="id", type=op_type, id_gt=id_gt
                    )
                    pages += 1
                    self.list_reads += 1
                    metrics.incr("reader.list_reads")
                    items = [item for item in page["items"] if isinstance(item, dict)]
                    for item in items:
                        if item.get("id") in waited and item.get("status") == status.value:
                            listed[item["id"]] = item  # RUNNING, read second, replaces PENDING
                    if not page.get("has_more") or not items or not items[-1].get("id"):
                        break
                    id_gt = str(items[-1]["id"])
                self._pages[(op_type, status)] = pages
        ended = []
        for count, operation_id in enumerate(waited, 1):
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            operation = listed.get(operation_id)
            if operation is not None and self._plausible(operation_id, operation):
                self._saw(operation_id, operation, now)
            else:
                ended.append(operation_id)
        self._ending = bool(ended)
        await self._read_ended(hook, ended, now)

    def _plausible(self, operation_id: str, operation: dict[str, Any]) -> bool:
        """An operation only moves forward: a list showing it back in PENDING is not to be believed."""
        seen = next((w.seen for w in self._by_id.get(operation_id, ()) if w.seen), None)
        if seen is None:
            return True
        try:
            before = operation_status(seen)
        except TolokaError:
            return False
        return before in _RANK and _RANK[OperationStatus(operation["status"])] >= _RANK[before]

    async def _read_ended(self, hook: TolokaAsyncHook, operation_ids: list[str], now: float) -> None:
        """Final states of operations gone from the active lists: a SUCCESS page per type, then one by one."""
        by_type: dict[str | None, set[str]] = defaultdict(set)
        for operation_id in operation_ids:
            by_type[self._types.get(operation_id)].add(operation_id)
        rest: set[str] = set()
        for op_type, ids in by_type.items():
            if op_type is not None and len(ids) > 1:  # one page may save several reads
                page = await hook.list_operations(
                    status=OperationStatus.SUCCESS.value, sort="-submitted", type=op_type
                )
                self.list_reads += 1
                metrics.incr("reader.list_reads")
                for item in page["items"]:
                    if isinstance(item, dict) and item.get("id") in ids and item.get("status") == "SUCCESS":
                        self._saw(item["id"], item, now)
                        ids.discard(item["id"])
            rest |= ids
        await self._read_each(hook, rest, now)

    async def _read_each(self, hook: TolokaAsyncHook, operation_ids: Iterable[str], now: float) -> None:
        """``GET /operations/{id}`` for each, concurrently (the shared client bounds the sockets)."""
        ids = list(operation_ids)

        async def read(operation_id: str) -> dict[str, Any]:
            self.single_reads += 1
            metrics.incr("reader.single_reads")
            operation = await hook.get_operation(operation_id)
            if operation_status(operation) is OperationStatus.FAIL:
                operation = await hook.operation_with_log(operation)
            return operation

        results = await asyncio.gather(*(read(operation_id) for operation_id in ids), return_exceptions=True)
        transient: BaseException | None = None
        refused_token = False
        for count, (operation_id, result) in enumerate(zip(ids, results, strict=True), 1):
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if _unauthorized(result) and not self._token_rechecked:
                refused_token = True  # a rotated token? the connection is read again before any wait ends
            elif isinstance(result, TolokaError) and not hook.is_transient(result):
                self._refused(operation_id, result)  # a refusal: this wait ends, the others go on
            elif isinstance(result, BaseException):
                if not hook.is_transient(result):
                    raise result
                transient = transient or result
            else:
                self._saw(operation_id, result, now)
        if refused_token:
            self._token_suspect = True
        elif results:
            self._token_rechecked = False
        if transient is not None:
            raise transient

    # --- bookkeeping -------------------------------------------------------------------------------

    def _saw(self, operation_id: str, operation: dict[str, Any], now: float) -> None:
        status = operation_status(operation)
        if operation.get("type"):
            self._types[operation_id] = str(operation["type"])
        for waiter in list(self._by_id.get(operation_id, ())):
            waiter.seen = operation
            if status.is_terminal:
                self._resolve(waiter, WaitOutcome("ended", operation))
            elif now >= waiter.deadline:
                self._resolve(waiter, WaitOutcome("timeout", operation))
            else:
                self._advance(waiter, now)
                waiter.news.set()

    def _advance(self, waiter: Waiter, now: float) -> None:
        delay = next(waiter.delays)
        if delay < waiter.poll_interval:
            waiter.due = now + delay
            return
        waiter.graduated = True
        if self._group_due is None or self._group_due > now + waiter.poll_interval:
            self._group_due = now + waiter.poll_interval

    def _refused(self, operation_id: str, error: TolokaError) -> None:
        for waiter in list(self._by_id.get(operation_id, ())):
            self._resolve(waiter, WaitOutcome("error", waiter.seen, str(error), error))

    def _expire(self, now: float) -> None:
        """Time out the waits whose deadline passed while Toloka could not be read."""
        for waiter in [waiter for waiter in self._waiters if waiter.deadline <= now]:
            self._resolve(waiter, WaitOutcome("timeout", waiter.seen, self.outage.describe()))

    def _tell_all(self) -> None:
        """Wake every trigger to log the start or the end of an outage in its own task's log."""
        for waiter in self._waiters:
            waiter.news.set()

    def _fail_all(self, message: str) -> None:
        for waiter in list(self._waiters):
            self._resolve(waiter, WaitOutcome("error", waiter.seen, message))

    def _resolve(self, waiter: Waiter, outcome: WaitOutcome) -> None:
        waiter.outcome = outcome
        waiter.news.set()
        self._forget(waiter)

    def _forget(self, waiter: Waiter) -> None:
        self._waiters.discard(waiter)
        self._unchecked.discard(waiter)
        same = self._by_id.get(waiter.operation_id)
        if same is not None:
            same.discard(waiter)
            if not same:
                del self._by_id[waiter.operation_id]
                self._types.pop(waiter.operation_id, None)

    def _retire(self) -> None:
        """Leave the registry at once, so a trigger arriving from now on starts a new reader."""
        self.closed = True
        if self._registry.get(self.conn_id) is self:
            del self._registry[self.conn_id]


def _unauthorized(result: object) -> bool:
    return isinstance(result, TolokaApiError) and result.status_code == 401


_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, OperationReader]] = (
    weakref.WeakKeyDictionary()
)


def shared_reader(conn_id: str) -> OperationReader:
    """The running loop's reader for ``conn_id``, started by the first trigger that asks."""
    registry = _readers.setdefault(asyncio.get_running_loop(), {})
    reader = registry.get(conn_id)
    if reader is None or reader.closed:
        reader = registry[conn_id] = OperationReader(conn_id, registry)
    return reader


def active_reader(conn_id: str) -> OperationReader | None:
    """The running loop's reader for ``conn_id`` if one is open (for tests and diagnostics)."""
    return _readers.get(asyncio.get_running_loop(), {}).get(conn_id)
