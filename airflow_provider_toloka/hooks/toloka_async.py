"""The asynchronous side of the hook, for the triggerer: what ``TolokaHook`` does, without blocking a loop.

``TolokaAsyncHook`` reads operations with ``httpx``, with the same answer rules (``hooks.answer``) and
retry policy (``retry.retry_policy``) as the synchronous hook, so a deferred wait and a blocking one
behave alike and the trigger itself never touches HTTP.

One HTTP client per connection and event loop is shared by every trigger waiting in that loop. A
triggerer may hold thousands of waits. Reading the connection and building an ``httpx.AsyncClient``
(TLS context included) both take CPU without yielding to the loop; paid per trigger, thousands of
triggers starting together stall the loop (``benchmarks/bench_trigger.py`` prints the loop's lag).
Shared, the cost is paid once, and a bounded pool keeps the open sockets to Toloka at
``MAX_CONNECTIONS``.

The pool is small on purpose: httpcore checks every idle connection (a ``poll()`` system call each)
whenever it admits or releases a request, so its CPU cost per poll grows with the pool, and a large
pool becomes the loop's main load (the benchmark shows it). A few dozen connections at a round trip
of about a tenth of a second already carry polls near Toloka's per-account request limit.

The client lives while any trigger uses it and closes with the last one. A trigger starting after
``MAX_AGE`` seconds gets a fresh client and a fresh read of the connection, so a rotated token is
picked up within minutes even on a triggerer that is never idle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from airflow.providers.common.compat.sdk import BaseHook
from tenacity import AsyncRetrying

from airflow_provider_toloka import compat
from airflow_provider_toloka.connection import DEFAULT_TIMEOUT, TolokaConnectionSettings
from airflow_provider_toloka.exceptions import TolokaError
from airflow_provider_toloka.hooks.answer import PAGE_LIMIT, read_answer
from airflow_provider_toloka.retry import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_MAX_WAIT,
    DEFAULT_RETRY_MIN_WAIT,
    is_retryable,
    release,
    retry_policy,
)
from airflow_provider_toloka.throttle import AsyncPacer
from airflow_provider_toloka.validation import validate_id

if TYPE_CHECKING:
    from airflow_provider_toloka.budget import SharedBudget

MAX_CONNECTIONS = 25
MAX_AGE = 300.0
# ``account`` left at the connection's own ``act_under_account_id`` (``shared_client``).
OWN_ACCOUNT: object = object()


@dataclass
class SharedClient:
    settings: TolokaConnectionSettings
    client: httpx.AsyncClient
    opened: float = field(default_factory=time.monotonic)
    users: int = 0
    # httpcore rescans its whole wait queue on every request it admits or releases: with thousands of
    # triggers queued that is quadratic (benchmarks/bench_trigger.py shows the CPU it burns). Waiting here,
    # in O(1) per wake-up, keeps its queue no longer than the pool.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))
    # The connection's declared ``requests_per_second``, kept by every hook on this client that brings no
    # pacer of its own (the shared reader brings one that outlives clients).
    pacer: AsyncPacer = field(default_factory=AsyncPacer)
    # The account's budget shared with every process (``rate_limit_storage_uri``), taken after the pace.
    budget: SharedBudget | None = None

    async def get(
        self, path: str, params: dict[str, str] | None = None, pacer: AsyncPacer | None = None
    ) -> httpx.Response:
        async with self.slots:
            # Paced once a socket is ours, so requests queued for the pool cannot go out together.
            if pacer is not None:
                await pacer.wait()
            if self.budget is not None:
                await self.budget.atake()
            response = await self.client.get(path, params=params)
        # httpx binds each response to its stream in a reference cycle. Broken here (the body is read), a
        # poll's response is freed at once, not left for the cyclic collector (see ``retry.release``).
        response.stream = httpx.ByteStream(b"")
        return response

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.opened > MAX_AGE


_Registry = dict[str, "asyncio.Task[SharedClient]"]
_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = weakref.WeakKeyDictionary()


async def read_settings(conn_id: str) -> TolokaConnectionSettings:
    """The connection as it is now: one read, without blocking the loop (``compat``)."""
    conn, extra = await compat.aget_connection_and_extra(conn_id)
    return TolokaConnectionSettings.from_connection(conn, extra=extra)


async def _open(
    conn_id: str, settings: TolokaConnectionSettings | None, account: str | object | None
) -> SharedClient:
    if settings is None:
        settings = await read_settings(conn_id)
    if account is not OWN_ACCOUNT:
        settings = dataclasses.replace(settings, act_under_account_id=account)  # type: ignore[arg-type]
    client = httpx.AsyncClient(
        base_url=settings.api_url,
        headers=settings.headers,
        timeout=settings.timeout or DEFAULT_TIMEOUT,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        # A redirect could carry the token to a host the user never configured.
        follow_redirects=False,
    )
    budget = None
    if settings.rate_limit_storage_uri:
        from airflow_provider_toloka.budget import budget_for

        budget = budget_for(settings)
    return SharedClient(settings, client, pacer=AsyncPacer(settings.requests_per_second), budget=budget)


def _needs_opening(
    opening: asyncio.Task[SharedClient] | None, settings: TolokaConnectionSettings | None
) -> bool:
    if opening is None:
        return True
    if not opening.done():
        return False
    if opening.cancelled() or opening.exception() is not None or opening.result().expired:
        return True
    # Read afresh by the caller and different (a rotated token): the old client must not be handed out.
    return settings is not None and opening.result().settings != settings


@asynccontextmanager
async def shared_client(
    conn_id: str,
    *,
    settings: TolokaConnectionSettings | None = None,
    account: str | object | None = OWN_ACCOUNT,
) -> AsyncIterator[SharedClient]:
    """The loop's client for ``conn_id``; the connection is read once however many triggers start together.

    Raises what reading the connection raises (``AirflowNotFoundException``, ``ValueError`` for an
    unusable one); the next trigger then tries again.

    :param settings: the connection as the caller just read it: a shared client made from anything else
        (an older token, another account) is replaced by one made from these (no second read).
    :param account: act under this account instead of the connection's ``act_under_account_id`` (a
        separate client): for waits on operations an earlier account started.
    """
    registry = _registries.setdefault(asyncio.get_running_loop(), {})
    key = conn_id if account is OWN_ACCOUNT else f"{conn_id}\x00account={account}"
    if settings is not None and account is not OWN_ACCOUNT:
        settings = dataclasses.replace(settings, act_under_account_id=account)  # type: ignore[arg-type]
    opening = registry.get(key)
    if _needs_opening(opening, settings):
        opening = registry[key] = asyncio.ensure_future(_open(conn_id, settings, account))
    assert opening is not None
    # Shielded: a trigger cancelled while the connection is read must not cancel it for the others.
    shared = await asyncio.shield(opening)
    shared.users += 1
    try:
        yield shared
    finally:
        shared.users -= 1
        if shared.users == 0:
            if registry.get(key) is opening:
                del registry[key]
            await shared.client.aclose()


class TolokaAsyncHook(BaseHook):
    """Read Toloka operations from an event loop; use as ``async with TolokaAsyncHook(conn_id) as hook``.

    Entering borrows the loop's shared client for the connection (reading the connection with the
    async API the first time); leaving gives it back. Reads are retried like the sync hook's.

    :param toloka_conn_id: Airflow connection of type ``toloka``.
    :param retry_min_wait: first back-off delay in seconds after a transient fault.
    :param retry_max_wait: longest back-off delay in seconds (a ``Retry-After`` header wins).
    :param max_retries: retries after a transient fault; ``None`` takes the connection's ``max_retries``.
        ``0`` sends each request once and raises its fault as is, for a caller that rides out faults
        itself (the shared reader of ``triggers.reader``).
    :param pacer: waited on before each request, for a user whose pace outlives one client (the shared
        reader); ``None`` keeps the connection's ``requests_per_second`` with every other hook of this loop.
    :param settings: the connection as the caller just read it (``read_settings``): used instead of a
        shared client that holds another token.
    :param account: act under this account, not the connection's ``act_under_account_id`` (the shared
        reader, for waits an earlier account started); default: the connection's.
    """

    def __init__(
        self,
        toloka_conn_id: str = "toloka_default",
        *,
        retry_min_wait: float = DEFAULT_RETRY_MIN_WAIT,
        retry_max_wait: float = DEFAULT_RETRY_MAX_WAIT,
        max_retries: int | None = None,
        pacer: AsyncPacer | None = None,
        settings: TolokaConnectionSettings | None = None,
        account: str | object | None = OWN_ACCOUNT,
    ) -> None:
        super().__init__()
        self.toloka_conn_id = toloka_conn_id
        self._fresh_settings = settings
        self._account = account
        self.retry_min_wait = retry_min_wait
        self.retry_max_wait = retry_max_wait
        self.max_retries = max_retries
        self.pacer = pacer
        self._borrowed: AbstractAsyncContextManager[SharedClient] | None = None
        self._shared: SharedClient | None = None

    async def __aenter__(self) -> TolokaAsyncHook:
        self._borrowed = shared_client(
            self.toloka_conn_id, settings=self._fresh_settings, account=self._account
        )
        self._shared = await self._borrowed.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._borrowed is not None
        await self._borrowed.__aexit__(exc_type, exc, tb)
        self._borrowed = self._shared = None

    @property
    def settings(self) -> TolokaConnectionSettings:
        if self._shared is None:
            raise RuntimeError("use TolokaAsyncHook as `async with TolokaAsyncHook(conn_id) as hook`")
        return self._shared.settings

    @property
    def expired(self) -> bool:
        """The shared client is older than ``MAX_AGE``: a long-lived user re-enters for a fresh one."""
        return self._shared is not None and self._shared.expired

    @staticmethod
    def is_transient(error: BaseException) -> bool:
        """A fault worth trying again (429, 5xx, a dropped or timed-out connection), by ``retry``'s rules."""
        return is_retryable(error, (httpx.TransportError,))

    async def get_operation(self, operation_id: str) -> dict[str, Any]:
        """One operation, for the trigger reader. Retries as ``max_retries`` says (the reader sets 0)."""
        return await self._get(f"/operations/{validate_id('operation_id', operation_id)}")

    async def list_operations(
        self, *, status: str, sort: str, type: str | None = None, id_gt: str | None = None
    ) -> dict[str, Any]:
        """One page of ``GET /operations`` (up to ``PAGE_LIMIT``): ``{"items": [...], "has_more": bool}``.

        Toloka pages with ``sort=id`` and ``id_gt=<last id>``; ``type`` left out lists every type.
        """
        params = {"status": status, "sort": sort, "limit": str(PAGE_LIMIT)}
        if type is not None:
            params["type"] = type
        if id_gt is not None:
            params["id_gt"] = validate_id("id_gt", id_gt)
        page = await self._get("/operations", params)
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise TolokaError(
                f"Toloka answered GET /operations with {page!r:.200} where a page was expected."
            )
        return page

    async def operation_with_log(self, operation: dict[str, Any]) -> dict[str, Any]:
        """The FAIL operation with Toloka's log of it attached; one try, as the failure is known anyway."""
        try:
            log = await self._send(f"/operations/{validate_id('operation_id', operation['id'])}/log")
        except (TolokaError, httpx.TransportError):
            return operation
        return {**operation, "log": log} if log else operation

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        max_retries = self.max_retries if self.max_retries is not None else self.settings.max_retries
        if max_retries == 0:
            return await self._send(path, params)
        retrying = AsyncRetrying(
            **retry_policy(
                method="GET",
                path=path,
                max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
                min_wait=self.retry_min_wait,
                max_wait=self.retry_max_wait,
                transient=(httpx.TransportError,),
                log=self.log,
            )
        )
        try:
            return await retrying(self._send, path, params)
        finally:
            release(retrying)

    async def _send(self, path: str, params: dict[str, str] | None = None) -> Any:
        assert self._shared is not None
        response = await self._shared.get(path, params, self.pacer or self._shared.pacer)
        return read_answer(
            "GET",
            path,
            status_code=response.status_code,
            headers=response.headers,
            text=response.text,
            reason=response.reason_phrase,
            api_url=self.settings.api_url,
            scrub=self.settings.scrub,
        )
