"""One HTTP client per connection and event loop, shared by every trigger waiting in that loop.

A triggerer may hold thousands of waits. Reading the connection costs ~6 ms of CPU and building an
``httpx.AsyncClient`` (TLS context included) ~1 ms, both without yielding to the loop; per trigger, 5000
triggers starting together stalled the loop for 10 s in ``benchmarks/bench_trigger.py``. Shared, the
cost is paid once, and a bounded pool keeps the open sockets to Toloka at ``MAX_CONNECTIONS``.

The client lives while any trigger uses it and closes with the last one. A trigger starting after
``MAX_AGE`` seconds gets a fresh client and a fresh read of the connection, so a rotated token is
picked up within minutes even on a triggerer that is never idle.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from airflow.sdk import BaseHook

from airflow_provider_toloka.connection import DEFAULT_TIMEOUT, TolokaConnectionSettings

MAX_CONNECTIONS = 100
MAX_AGE = 300.0


@dataclass
class SharedClient:
    settings: TolokaConnectionSettings
    client: httpx.AsyncClient
    opened: float = field(default_factory=time.monotonic)
    users: int = 0
    # httpcore rescans its whole wait queue on every request it admits or releases: with thousands of
    # triggers queued that is quadratic and pinned a CPU for minutes in the benchmark. Waiting here,
    # in O(1) per wake-up, keeps its queue no longer than the pool.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONNECTIONS))

    async def get(self, path: str) -> httpx.Response:
        async with self.slots:
            return await self.client.get(path)

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.opened > MAX_AGE


_Registry = dict[str, "asyncio.Task[SharedClient]"]
_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = weakref.WeakKeyDictionary()


async def _open(conn_id: str) -> SharedClient:
    conn = await BaseHook.aget_connection(conn_id)
    settings = TolokaConnectionSettings.from_connection(conn, extra=await conn.aextra_dejson())
    client = httpx.AsyncClient(
        base_url=settings.api_url,
        headers=settings.headers,
        timeout=settings.timeout or DEFAULT_TIMEOUT,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        # A redirect could carry the token to a host the user never configured.
        follow_redirects=False,
    )
    return SharedClient(settings, client)


def _needs_opening(opening: asyncio.Task[SharedClient] | None) -> bool:
    if opening is None:
        return True
    if not opening.done():
        return False
    return opening.cancelled() or opening.exception() is not None or opening.result().expired


@asynccontextmanager
async def shared_client(conn_id: str) -> AsyncIterator[SharedClient]:
    """The loop's client for ``conn_id``; the connection is read once however many triggers start together.

    Raises what reading the connection raises (``AirflowNotFoundException``, ``ValueError`` for an
    unusable one); the next trigger then tries again.
    """
    registry = _registries.setdefault(asyncio.get_running_loop(), {})
    opening = registry.get(conn_id)
    if _needs_opening(opening):
        opening = registry[conn_id] = asyncio.ensure_future(_open(conn_id))
    assert opening is not None
    # Shielded: a trigger cancelled while the connection is read must not cancel it for the others.
    shared = await asyncio.shield(opening)
    shared.users += 1
    try:
        yield shared
    finally:
        shared.users -= 1
        if shared.users == 0:
            if registry.get(conn_id) is opening:
                del registry[conn_id]
            await shared.client.aclose()
