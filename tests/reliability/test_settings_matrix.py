"""Every setting on every path: each connection setting, through each way the provider sends requests.

A setting built for one path is easily missed on another (a pace kept by the sync hook and not the async
one, a quota waited out by a plain archive and not by the cascade's reads). The matrix is generated: every
extra of the connection form and every hook-level setting is a row, every request path a column, and each
cell either runs the path against the emulator with the setting and checks what Toloka saw, or names why the
setting cannot apply there. A new setting or path fails ``test_the_matrix_covers_every_setting_and_path``
until its cells are written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum
import pytest
from provider_classes import public_classes
from task_instance_stub import RecordingTI

from airflow_provider_toloka import get_provider_info
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.hooks.toloka_async import TolokaAsyncHook
from airflow_provider_toloka.housekeeping import run as housekeeping_run
from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor
from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger, TolokaHousekeepingTrigger
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

ACCOUNT = "shared-acc-7"
RATE = 4.0  # requests a second: slow enough that an unpaced path is plainly too fast


@dataclass
class Run:
    """One path's run: the emulator, the hook-level options the setting asks for, what the path set up."""

    emu: Any
    options: dict[str, Any] = field(default_factory=dict)
    operation_id: str = ""
    # One event loop for the run, as a triggerer has: what a path does on it shares the loop's clients
    # and readers with whatever else runs there (a wait started before a rotation, say).
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    request: Any = None  # pytest's, for fixtures only some settings need (a Redis)


# -- the paths ---------------------------------------------------------------------------------------


def sync_hook(run: Run) -> None:
    hook = TolokaHook(**run.options)
    hook.wait_for_operation(hook.archive_pool("10")["id"], poll_interval=0.1, timeout=60)
    list(hook.list_pools("1"))
    hook.get_pool("10")


def archive_operators(run: Run) -> None:
    for operator in (
        TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.1, **run.options),
        TolokaArchiveTrainingOperator(task_id="t", training_id="20", poll_interval=0.1, **run.options),
    ):
        assert operator.execute({"ti": RecordingTI()})["status"] == "SUCCESS"


def async_hook(run: Run) -> None:
    async def read() -> None:
        async with TolokaAsyncHook() as hook:
            for _ in range(4):
                await hook.get_operation(run.operation_id)

    run.loop.run_until_complete(read())


def shared_reader(run: Run) -> None:
    async def wait() -> list[dict]:
        trigger = TolokaOperationTrigger(run.operation_id, poll_interval=0.1, end_time=time.time() + 120)
        return [event.payload async for event in trigger.run()]

    [event] = run.loop.run_until_complete(wait())
    assert event["status"] == "success", event


def cascade_in_the_worker(run: Run) -> None:
    operator = TolokaArchiveProjectOperator(
        task_id="c", project_id="7", cascade=True, poll_interval=0.1, max_concurrency=3, **run.options
    )
    assert operator.execute({"ti": RecordingTI()})["project"]["operation"]["status"] == "SUCCESS"


def deferred(run: Run, operator: Any) -> Any:
    """Run ``operator`` deferred: the worker defers, the trigger does the work, the worker records it."""
    from airflow.providers.common.compat.sdk import TaskDeferred
    from airflow.sdk.execution_time.context import OutletEventAccessors

    with pytest.raises(TaskDeferred) as deferral:
        operator.execute({"ti": RecordingTI()})

    async def fire() -> dict:
        [event] = [event.payload async for event in deferral.value.trigger.run()]
        return event

    resume = getattr(operator, deferral.value.method_name)
    event = run.loop.run_until_complete(fire())
    return resume({"ti": RecordingTI(), "outlet_events": OutletEventAccessors()}, event)


def cascade_in_the_triggerer(run: Run) -> None:
    operator = TolokaArchiveProjectOperator(
        task_id="c", project_id="7", cascade=True, poll_interval=0.1, max_concurrency=3, deferrable=True,
        **run.options,
    )  # fmt: skip
    assert deferred(run, operator)["project"]["operation"]["status"] == "SUCCESS"


def housekeeping_in_the_triggerer(run: Run) -> None:
    operator = TolokaHousekeepingOperator(
        task_id="h", min_idle_days=30, poll_interval=0.1, deferrable=True, **run.options
    )
    assert sorted(deferred(run, operator)["archived"]) == ["1", "7"]


def housekeeping(run: Run) -> None:
    operator = TolokaHousekeepingOperator(task_id="h", min_idle_days=30, poll_interval=0.1, **run.options)
    assert sorted(operator.execute({"ti": RecordingTI()})["archived"]) == ["1", "7"]


def connection_test(run: Run) -> None:
    hook = TolokaHook(**run.options)
    for _ in range(3):
        assert hook.test_connection()[0]


def sensor_poke(run: Run) -> None:
    sensor = TolokaOperationSensor(
        task_id="s", operation_id=run.operation_id, poke_interval=0.1, **run.options
    )
    sensor.execute({"ti": RecordingTI()})


class RescheduledTI(RecordingTI):
    """A try of a sensor in reschedule mode: Airflow tells it when its first try started."""

    def __init__(self, first_try: dt.datetime) -> None:
        super().__init__()
        self.first_try = first_try

    def get_first_reschedule_date(self, context: Any) -> dt.datetime:
        return self.first_try


def sensor_reschedule(run: Run) -> None:
    from airflow.exceptions import AirflowRescheduleException

    first_try = dt.datetime.now(dt.UTC)
    for _ in range(100):
        # Each try is a new process in Airflow: a new sensor, a new hook.
        sensor = TolokaOperationSensor(
            task_id="s", operation_id=run.operation_id, poke_interval=0.1, mode="reschedule", **run.options
        )
        try:
            sensor.execute({"ti": RescheduledTI(first_try)})
            return
        except AirflowRescheduleException:
            time.sleep(0.1)
    raise AssertionError("the operation never ended")


@dataclass(frozen=True)
class Path:
    run: Callable[[Run], None]
    # The provider's classes whose requests this path is (every one must be on some path).
    classes: tuple[type, ...]
    # Seconds of a running archive of pool 10 made before the run (not counted), for paths that wait on one.
    operation_seconds: float | None = None
    # Where its first read of a running operation goes (a 429 there tests the waits, not the archives).
    operation_read: str | None = "/operations"


PATHS = {
    "sync hook": Path(sync_hook, (TolokaHook,)),
    "archive operators": Path(archive_operators, (TolokaArchivePoolOperator, TolokaArchiveTrainingOperator)),
    "async hook": Path(async_hook, (TolokaAsyncHook,), operation_seconds=30),
    "shared reader": Path(shared_reader, (TolokaOperationTrigger,), operation_seconds=4),
    "cascade in the worker": Path(cascade_in_the_worker, (TolokaArchiveProjectOperator,)),
    "cascade in the triggerer": Path(cascade_in_the_triggerer, (TolokaCascadeTrigger,)),
    "housekeeping": Path(housekeeping, (TolokaHousekeepingOperator,)),
    "housekeeping in the triggerer": Path(housekeeping_in_the_triggerer, (TolokaHousekeepingTrigger,)),
    "test_connection": Path(connection_test, (TolokaHook,), operation_read=None),
    "sensor poke": Path(sensor_poke, (TolokaOperationSensor,), operation_seconds=1),
    "sensor reschedule": Path(sensor_reschedule, (TolokaOperationSensor,), operation_seconds=1),
}


# -- the settings ------------------------------------------------------------------------------------


def conn_json(emu, **extra: Any) -> str:
    return json.dumps({"conn_type": "toloka", "host": emu.url, "password": emu.token, "extra": extra})


def act_under_account_id(run: Run, monkeypatch, path: Path) -> None:
    run.emu.accounts = [ACCOUNT]
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(run.emu, act_under_account_id=ACCOUNT))
    path.run(run)
    assert run.emu.requests, "the path sent nothing"
    assert {record.account for record in run.emu.requests} == {ACCOUNT}


def requests_per_second(run: Run, monkeypatch, path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(run.emu, requests_per_second=RATE))
    path.run(run)
    arrivals = sorted(record.time for record in run.emu.requests)
    assert len(arrivals) >= 3, "the path must send at least 3 requests for its pace to show"
    # A lower bound, so a slow machine only makes it truer: n requests at RATE span (n - 1) / RATE seconds
    # at least, less what one request's latency can vary by (the 0.7).
    span = arrivals[-1] - arrivals[0]
    assert span >= 0.7 * (len(arrivals) - 1) / RATE, f"{len(arrivals)} requests in {span:.2f} s"


def rate_limit_storage_uri(run: Run, monkeypatch, path: Path) -> None:
    from airflow_provider_toloka import budget

    store = run.request.getfixturevalue("redis_store")
    monkeypatch.setattr(budget, "_budgets", {})  # this process's budgets start afresh
    rate = 2 * RATE  # shared between the path and the other process
    shared = {"requests_per_second": rate, **store.budget_extra()}
    assert shared["rate_limit_storage_password"], "the store asks for a password (TESTED_IN_ROW)"
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(run.emu, **shared))
    # Another process of the same account takes every slot it can meanwhile. With one budget, what the path
    # sends and what the other takes together keep to the rate; each going by its own pace, both would send
    # at the full rate, twice it together.
    other = budget.SharedBudget(
        store.url, rate, budget.account_key(TolokaHook().settings), password=store.password
    )
    done, taking = threading.Event(), threading.Event()
    granted: list[float] = []

    def take_all() -> None:
        while not done.is_set():
            other.take()
            granted.append(time.time())
            taking.set()

    hog = threading.Thread(target=take_all, daemon=True)
    hog.start()
    assert taking.wait(timeout=30), "the other process never got a slot"
    try:
        path.run(run)
    finally:
        done.set()
        hog.join(timeout=10)
    sent = len(run.emu.requests)
    assert sent >= 3, "the path must send at least 3 requests for the budget to show"
    # Counted over the other's whole run, which holds the path's: it took a slot before the path began and
    # another after it ended. Both are times on this clock as each slot came, so the window needs no
    # allowance for a request that reaches the emulator late (a loaded machine: ~0.1 s, enough to let a
    # window cut at the path's arrivals take in one of the other's slots too many).
    span = granted[-1] - granted[0]
    together = sent + len(granted)
    # Without one budget the other alone fills the rate over its span and the path's requests come on top.
    assert together <= rate * span + 2, f"{sent} requests and {len(granted)} of the other's in {span:.2f} s"


def wait_out_quota(run: Run, monkeypatch, path: Path) -> None:
    # An HOUR quota that resets in a second, on the path's first read of a running operation (or its first
    # request where it reads none): with wait_out_quota the path waits it out and finishes.
    run.emu.inject_fault("429", quota="HOUR", retry_after=1, path=path.operation_read, count=1)
    run.options["wait_out_quota"] = True
    path.run(run)
    statuses = [record.status for record in run.emu.requests]
    assert 429 in statuses, "the quota was never met: the cell proves nothing"


def rotated_token(run: Run, monkeypatch, path: Path) -> None:
    # A wait that started before the rotation keeps the loop's reader and client (with the old token)
    # busy while the path runs, as in a triggerer that never goes idle.
    run.emu.operation_duration = 30
    waiting = TolokaOperationTrigger(TolokaHook().close_pool("11")["id"], poll_interval=0.1)
    events = waiting.run().__aiter__()
    background = run.loop.create_task(events.__anext__())
    run.loop.run_until_complete(asyncio.sleep(1))  # its first reads go out under the old token
    run.emu.rotate_token("rotated-token")
    conn = json.loads(conn_json(run.emu))
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps({**conn, "password": "rotated-token"}))
    run.emu.operation_duration = 0.1
    run.emu.clear_requests()
    try:
        path.run(run)
    finally:
        background.cancel()
        run.loop.run_until_complete(asyncio.gather(background, return_exceptions=True))
        run.loop.run_until_complete(events.aclose())
    assert run.emu.requests, "the path sent nothing"
    # The path's requests carried the new token; the old one, still in the waiting reader's hands at the
    # rotation, is refused at most once for it before it reads the connection again.
    assert sum(record.status == 401 for record in run.emu.requests) <= 1


@dataclass(frozen=True)
class Setting:
    check: Callable[[Run, Any, Path], None]
    # Paths where the setting cannot apply, and why (the reason is the documentation of the gap).
    not_applicable: dict[str, str] = field(default_factory=dict)
    # Cells not yet honoured: an open bug, named. strict xfail, so fixing it fails until the mark goes.
    open_bugs: dict[str, str] = field(default_factory=dict)


SETTINGS = {
    "act_under_account_id": Setting(act_under_account_id),
    "rotated token": Setting(
        rotated_token,
        not_applicable={
            "async hook": "a bare TolokaAsyncHook borrows the loop's client as it is, for up to MAX_AGE (5 "
            "minutes); a user that must see a rotation at once passes settings= read afresh, as the shared "
            "reader does (its row)",
        },
    ),
    "requests_per_second": Setting(
        requests_per_second,
        not_applicable={
            "sensor reschedule": "one request per try, and each try is its own process: nothing to pace",
        },
    ),
    "rate_limit_storage_uri": Setting(
        rate_limit_storage_uri,
        not_applicable={
            "sensor reschedule": "one request per try, and each try is its own process: nothing to pace",
        },
    ),
    "wait_out_quota": Setting(
        wait_out_quota,
        not_applicable={
            "async hook": "a parameter of the blocking hook and the tasks; the async hook raises the quota",
            "shared reader": "the triggerer ends the wait at once with an error naming the quota "
            "(docs/reliability.md): a deferred task does not hold a triggerer slot for an hour",
        },
    ),
}

# Connection extras that every path reads through ``TolokaConnectionSettings`` before its first request
# and that change no request once it is built, so one path's test stands for all: where they are tested.
BUILT_INTO_EVERY_CLIENT = {
    "environment": "tests/hooks/test_toloka.py (the base URL)",
    "auth_scheme": "tests/hooks/test_toloka.py (the Authorization header)",
    "timeout": "tests/hooks/test_toloka.py and tests/triggers/ (httpx and requests time-outs)",
    "max_retries": "tests/reliability/test_fault_matrix.py",
    "ui_base_url": "sends no request: the operators' links (tests/test_links.py)",
}
# Connection extras tested by another setting's row, with why that row proves them on every path.
TESTED_IN_ROW = {
    "rate_limit_storage_password": (
        "rate_limit_storage_uri",
        "its Redis asks for a password: a path that left it out would lose the budget, and the row fails",
    ),
}


def connection_extras() -> set[str]:
    [toloka] = get_provider_info()["connection-types"]
    return set(toloka["conn-fields"])


def test_the_matrix_covers_every_setting_and_path():
    not_extras = {"wait_out_quota", "rotated token"}  # a task parameter; the connection's password changing
    assert connection_extras() - BUILT_INTO_EVERY_CLIENT.keys() - TESTED_IN_ROW.keys() <= SETTINGS.keys()
    assert {row for row, _why in TESTED_IN_ROW.values()} <= SETTINGS.keys()
    assert set(SETTINGS) - not_extras <= connection_extras()
    for name, setting in SETTINGS.items():
        assert set(setting.not_applicable) | set(setting.open_bugs) <= set(PATHS), name
    # Every operator, sensor, trigger and hook sends its requests on some path of the matrix.
    assert public_classes() <= {cls for path in PATHS.values() for cls in path.classes}


def cells() -> list:
    params = []
    for setting_name, setting in SETTINGS.items():
        for path_name in PATHS:
            if path_name in setting.not_applicable:
                continue
            marks = []
            if path_name in setting.open_bugs:
                marks.append(pytest.mark.xfail(strict=True, reason=setting.open_bugs[path_name]))
            params.append(
                pytest.param(setting_name, path_name, id=f"{setting_name}-{path_name}", marks=marks)
            )
    return params


@pytest.fixture
def emu(toloka_conn, monkeypatch):
    toloka_conn.operation_duration = 0.1
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    # Housekeeping skips it (an open pool): the rotated-token row's background wait closes that pool.
    toloka_conn.add_project("2")
    toloka_conn.add_pool("11", project_id="2", status="OPEN")
    toloka_conn.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=("10",))
    toloka_conn.add_project("7")
    for pool_id in ("70", "71", "72"):
        toloka_conn.add_pool(pool_id, project_id="7", status="CLOSED")
    toloka_conn.add_training("79", project_id="7", status="CLOSED", linked_pool_ids=("70",))
    # Housekeeping counts idle days up to the account's clock, which the test moves forward.
    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(toloka_conn.now))
    toloka_conn.advance_clock(60 * 86400)
    return toloka_conn


@pytest.mark.parametrize(("setting_name", "path_name"), cells())
def test_the_setting_is_honoured_on_the_path(emu, monkeypatch, request, setting_name, path_name):
    path = PATHS[path_name]
    run = Run(emu, request=request)
    if setting_name == "rate_limit_storage_uri":
        # Its Redis starts first: on a loaded machine that takes seconds, the path's operation's running time.
        request.getfixturevalue("redis_store")
    if path.operation_seconds is not None:
        emu.operation_duration = path.operation_seconds
        run.operation_id = TolokaHook().archive_pool("10")["id"]
        emu.clear_requests()
    try:
        SETTINGS[setting_name].check(run, monkeypatch, path)
    finally:
        run.loop.close()
