"""``TolokaEmulator``: the state, the routes and a uvicorn server on a background thread, behind one object.

The server gets its own thread and event loop so plain synchronous tests (and Airflow tasks) can call it with
``requests`` while the test itself keeps inspecting and steering the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from airflow_provider_toloka.emulator.app import create_app
from airflow_provider_toloka.emulator.control import with_control
from airflow_provider_toloka.emulator.errors import ApiError
from airflow_provider_toloka.emulator.faults import Fault, FaultPlan, RateLimiter
from airflow_provider_toloka.emulator.gate import ASGIApp, Gate
from airflow_provider_toloka.emulator.requestlog import RequestLog, RequestRecord
from airflow_provider_toloka.emulator.seeding import load_seed, load_seed_data
from airflow_provider_toloka.emulator.state import EmulatorState

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 2.0


class _Server(uvicorn.Server):
    """uvicorn tuned for being started and stopped once per test.

    Stock uvicorn notices ``should_exit`` only on its 0.1 s tick and then sleeps another fixed 0.1 s while
    connections wind down; here a stop wakes the loop at once and waits only as long as connections need.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):  # on_tick also refreshes the Date header once a second
            counter = (counter + 1) % 864000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now, busy ones after their answer
        deadline = time.monotonic() + _STOP_TIMEOUT
        while (self.server_state.connections or self.server_state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        for task in self.server_state.tasks:
            task.cancel()
        await self.lifespan.shutdown()

    def exit_soon(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                self._loop.call_soon_threadsafe(self._wake.set)


class TolokaEmulator:
    """A local Toloka API at ``url`` (routes under ``/api/v1``), started by ``start()`` or ``with``."""

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        operation_duration: float = 0.2,
        port: int = 0,
        seed: str | Path | None = None,
        host: str = "127.0.0.1",
        control: bool = False,
        control_token: str | None = None,
        accounts: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """:param accounts: shared accounts the tokens' user may act under (``X-Act-Under-Account-ID``).
        :param control: also serve the HTTP control API under ``/_emulator/`` (``control.py``), for
            an emulator steered from another process; the CLI turns it on.
        :param control_token: if set, control requests need ``Authorization: Bearer <control_token>``.
        :param clock: the real time the emulator's time runs on (Unix seconds). A test that passes a
            fixed one (``lambda: t0``) gets a time that moves only by ``advance_clock``: operations end
            exactly when it says, however slow the machine.
        """
        self.tokens = tuple(tokens)
        self.control = control or control_token is not None
        self._control_token = control_token
        if not self.tokens:
            raise ValueError("TolokaEmulator needs at least one token")
        self.host, self.port = host, port
        self._state = EmulatorState(clock=clock)
        self.operation_duration = operation_duration
        self._faults = FaultPlan()
        self._limiter = RateLimiter(clock=self._state.now)  # the emulator's second, not the machine's
        self._log = RequestLog()
        self._gate = Gate(
            create_app(self._state),
            tokens=self.tokens,
            faults=self._faults,
            limiter=self._limiter,
            log=self._log,
            clock=self._state.now,
        )
        self.accounts = accounts
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if seed is not None:
            self.load_seed(seed)

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> TolokaEmulator:
        """Bind (port 0 picks a free one), serve on a daemon thread, and return once requests are answered."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        app: ASGIApp = self._gate
        if self.control:
            app = with_control(self._gate, self, self._control_token)
        config = uvicorn.Config(
            app,
            http="httptools" if importlib.util.find_spec("httptools") else "auto",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"toloka-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Toloka emulator did not start on {self.host}:{self.port}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask uvicorn to finish open requests and exit, then wait for its thread."""
        if self._server is not None:
            self._server.exit_soon()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread = None, None

    def __enter__(self) -> TolokaEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- where to find it -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without ``/api/v1``: what an Airflow connection's host holds."""
        if self._thread is None:
            raise RuntimeError("start the emulator first (emulator.start() or a with block)")
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return self.tokens[0]

    def rotate_token(self, new_token: str) -> None:
        """Accept only ``new_token`` from now on, as after a rotation: the old token answers 401."""
        if not isinstance(new_token, str) or not new_token.strip():
            raise ValueError(f"new_token must be a non-empty string, got {new_token!r}")
        self.tokens = (new_token,)
        self._gate.tokens = frozenset(self.tokens)

    def airflow_conn_json(self, auth_scheme: str = "OAuth") -> str:
        """The value for ``AIRFLOW_CONN_TOLOKA_DEFAULT`` that points the provider at this emulator."""
        return json.dumps(
            {
                "conn_type": "toloka",
                "host": self.url,
                "password": self.token,
                "extra": {"auth_scheme": auth_scheme},
            }
        )

    # --- the world --------------------------------------------------------------------------------

    def add_project(
        self,
        project_id: str,
        status: str = "ACTIVE",
        public_name: str = "",
        created: dt.datetime | None = None,
    ) -> None:
        self._state.add_project(project_id, status, public_name, created)

    def add_pool(
        self,
        pool_id: str,
        project_id: str,
        status: str = "CLOSED",
        last_rejection: dt.datetime | None = None,
        private_name: str = "",
        last_close_reason: str | None = None,
        created: dt.datetime | None = None,
        last_started: dt.datetime | None = None,
        last_stopped: dt.datetime | None = None,
    ) -> None:
        """Add or replace a pool; its project is created (ACTIVE) when missing.

        ``created``, ``last_started`` and ``last_stopped`` (timezone-aware) default to now, the last one
        only for a pool that is not OPEN. ``last_rejection`` is inner state: it is never shown, but
        within 9 days of it archiving answers 409 ``THERE_IS_REJECTED_ASSIGNMENT``.
        """
        self._state.add_pool(
            pool_id,
            project_id,
            status,
            last_rejection,
            private_name,
            last_close_reason,
            created,
            last_started,
            last_stopped,
        )

    def add_training(
        self,
        training_id: str,
        project_id: str,
        status: str = "CLOSED",
        linked_pool_ids: Iterable[str] = (),
        private_name: str = "",
        created: dt.datetime | None = None,
        last_started: dt.datetime | None = None,
        last_stopped: dt.datetime | None = None,
    ) -> None:
        """Add or replace a training linked to main pools; its project is created (ACTIVE) when missing.

        Each linked pool then shows the link where Toloka does:
        ``quality_control.training_requirement.training_pool_id``.
        """
        self._state.add_training(
            training_id,
            project_id,
            status,
            linked_pool_ids,
            private_name,
            created,
            last_started,
            last_stopped,
        )

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: a rejection window or idle days pass in no time.

        Operations due by then finish at once; times in answers and the rules all follow this clock.
        """
        self._state.advance_clock(seconds)

    @property
    def now(self) -> dt.datetime:
        """The emulator's current time (UTC): the real clock plus every ``advance_clock``."""
        return dt.datetime.fromtimestamp(self._state.now(), dt.UTC)

    def reset(self) -> None:
        """Back to an empty world while the server keeps running: no objects, operations, faults,
        rate limit, latency or logged requests (``operation_duration`` stays). Lets one emulator
        serve many cases, e.g. every example of a property-based test."""
        self._state.reset()
        self._faults.clear()
        self._limiter.limit = None
        self._gate.latency = 0.0
        self._log.clear()

    def load_seed(self, seed: str | Path) -> None:
        """Load a packaged seed by name (``"demo"``) or a JSON seed file."""
        load_seed(self._state, seed)

    def load_seed_data(self, data: dict[str, Any]) -> None:
        """Load a seed already parsed (``{"projects": [...], "pools": [...], "trainings": [...]}``)."""
        load_seed_data(self._state, data)

    def object(self, kind: str, object_id: str) -> dict[str, Any]:
        """A copy of one project, pool or training as the API shows it now."""
        try:
            return self._state.get_object(kind, object_id)
        except ApiError as exc:
            raise KeyError(exc.message) from None

    def operations(self, type: str | None = None) -> list[dict[str, Any]]:
        """Copies of all operations in submission order, optionally only one ``type`` (``POOL.ARCHIVE``)."""
        return self._state.list_operations(type=type)[0]

    @property
    def operation_duration(self) -> float:
        """Seconds from submit to a terminal status for operations submitted from now on."""
        return self._state.operation_duration

    @operation_duration.setter
    def operation_duration(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"operation_duration must be 0 or more seconds, got {seconds}")
        self._state.operation_duration = seconds

    @property
    def operation_duration_spread(self) -> float:
        """Each operation submitted from now on lasts ``operation_duration`` plus up to this many seconds more
        (uniformly at random), so many operations end over a spell rather than together. Default 0."""
        return self._state.operation_duration_spread

    @operation_duration_spread.setter
    def operation_duration_spread(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"operation_duration_spread must be 0 or more seconds, got {seconds}")
        self._state.operation_duration_spread = seconds

    # --- trouble ----------------------------------------------------------------------------------

    def fail_next(self, kind: str, object_id: str, details: dict[str, Any] | None = None) -> None:
        """Make the next archive operation of this object end in FAIL with ``details`` (also in its /log)."""
        self._state.fail_next(kind, object_id, details)

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        path: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        delay: float = 1.0,
        when: str = "before",
        quota: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with a fault instead of the route.

        ``kind``: ``"429"``, ``"500"``, ``"502"``, ``"503"``, ``"504"``, ``"drop"`` (connection closed, no
        answer), ``"400"``/``"403"`` (refusals a client must not retry) or ``"slow"`` (wait ``delay``
        seconds, then answer normally). ``path`` matches as a substring of the URL path.
        ``when="after"`` (drop only) handles the request first, so only its answer is lost.
        ``retry_after`` is sent as a ``Retry-After`` header rounded up to whole seconds (HTTP allows
        no fractions: RFC 9110), so ``0.2`` is sent as ``1``.
        ``quota`` (kind ``"429"`` only): ``"MIN"``, ``"HOUR"`` or ``"DAY"``, the quota that ran out, sent as
        the error body's ``payload.interval`` as toloka-kit reads it; without it, the per-second limit's 429.
        """
        self._faults.add(Fault(kind, count, path, method, retry_after, delay, when, quota))

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def rate_limit(self) -> float | None:
        """Requests per second before answering 429; ``None`` is unlimited.

        A sliding one-second window of the emulator's time: ``advance_clock`` moves it on, and with a
        stopped ``clock`` every request falls in the same second until the test advances it.
        """
        return self._limiter.limit

    @rate_limit.setter
    def rate_limit(self, per_second: float | None) -> None:
        self._limiter.limit = per_second

    @property
    def accounts(self) -> list[str]:
        """Shared accounts the tokens' user may act under (``X-Act-Under-Account-ID``); others answer 403."""
        return sorted(self._gate.accounts)

    @accounts.setter
    def accounts(self, ids: Iterable[str]) -> None:
        given = [] if isinstance(ids, str) else list(ids)
        if isinstance(ids, str) or not all(isinstance(account, str) and account for account in given):
            raise ValueError(f"accounts must be a list of account ids (non-empty strings), got {ids!r}")
        self._gate.accounts = frozenset(given)

    @property
    def latency(self) -> float:
        """Seconds added to every request before it is handled."""
        return self._gate.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._gate.latency = seconds

    # --- what happened ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of every request so far, faulted ones included (a dropped one has status 0)."""
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()
