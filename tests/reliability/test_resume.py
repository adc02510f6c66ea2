"""A retried archive task waits on the archive it started instead of failing or starting another.

Two layers: ``ResumableJobMixin`` keeps the operation id in ``task_state_store`` (Airflow 3.3+), so a
retry reconnects without sending the archive request again; and the hook turns Toloka's
``409 OPERATION_ALREADY_EXISTS`` into the running operation, for when no id was stored (the answer to
the POST was lost, or Airflow is older than 3.3).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import airflow
import pytest
from packaging.version import Version
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaOperationFailed, TolokaOperationTimeout
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator

KEY = TolokaArchivePoolOperator.external_id_key


class FakeTaskStateStore:
    """What the mixin uses of Airflow's ``TaskStateStoreAccessor``; it outlives a try, like the real one."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        assert value is not None
        self.values[key] = value


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    return toloka_conn


def run_try(
    store: FakeTaskStateStore | None = None, hook: Any = None, **kwargs: Any
) -> tuple[Any, dict[str, object]]:
    """One try of the task; each try builds a new operator, as a retry on another worker does.

    ``hook``: the operator's hook built with millisecond back-off, for tests that retry requests.
    """
    ti = RecordingTI()
    context: dict[str, Any] = {"ti": ti}
    if store is not None:
        context["task_state_store"] = store
    operator = TolokaArchivePoolOperator(task_id="archive", pool_id="10", poll_interval=0.05, **kwargs)
    if hook is not None:
        operator.hook = hook
    return operator.execute(context), ti.pushed


# task_state_store (ResumableJobMixin) exists from Airflow 3.3; below it a retry always takes the 409
# look-up path, which the tests without a store prove on every minor.
needs_task_state_store = pytest.mark.skipif(
    Version(airflow.__version__) < Version("3.3.0"),
    reason="task_state_store is Airflow 3.3+; below, a retry finds the running archive",
)


def archive_posts(emu) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path.endswith("/archive"))


@pytest.fixture
def stopped_emu(stopped_clock_conn):
    """The emulator on a stopped clock: an archive runs until the test moves the clock, however slow the
    machine is."""
    stopped_clock_conn.add_pool("10", project_id="1", status="CLOSED")
    return stopped_clock_conn


@pytest.fixture
def stopped_hook(stopped_emu):
    """``hook``'s millisecond back-off, against ``stopped_emu``."""
    return TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05)


def end_the_archive_once_waited_on(emu) -> threading.Thread:
    """Move the stopped clock past the archive's end once a try reads the operation by its id: that try
    has found the running archive and waits on it (an event in the request log, not a time)."""

    def watch() -> None:
        deadline = time.monotonic() + 120  # a test that never gets there fails on its own assertion
        while time.monotonic() < deadline:
            if any(r.method == "GET" and r.path.startswith("/api/v1/operations/") for r in emu.requests):
                emu.advance_clock(60)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


# -- ResumableJobMixin: the stored operation id ----------------------------------------------------


@needs_task_state_store
def test_the_operation_id_is_stored_before_waiting(emu):
    store = FakeTaskStateStore()

    result, pushed = run_try(store)

    assert store.values == {KEY: result["id"]}
    assert pushed["operation_id"] == result["id"]
    assert result["status"] == "SUCCESS"


@needs_task_state_store
def test_a_retry_after_a_time_out_waits_on_the_stored_operation_without_asking_again(stopped_emu):
    emu = stopped_emu
    store = FakeTaskStateStore()
    with pytest.raises(TolokaOperationTimeout):
        run_try(store, timeout=0.2)  # the archive runs until the clock moves
    emu.advance_clock(60)

    result, pushed = run_try(store)

    assert result["status"] == "SUCCESS"
    assert result["id"] == store.values[KEY] == pushed["operation_id"]
    assert archive_posts(emu) == 1
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1
    assert emu.object("pool", "10")["status"] == "ARCHIVED"


@needs_task_state_store
def test_a_retry_after_success_returns_the_operation_without_any_archive_request(emu):
    store = FakeTaskStateStore()
    first, _ = run_try(store)
    emu.clear_requests()

    second, pushed = run_try(store)

    assert second["id"] == first["id"] == pushed["operation_id"]
    assert archive_posts(emu) == 0
    assert ("GET", f"/api/v1/operations/{first['id']}") in [(r.method, r.path) for r in emu.requests]


@needs_task_state_store
def test_a_retry_after_a_failed_operation_archives_afresh(emu):
    emu.fail_next("pool", "10", details={"reason": "export running"})
    store = FakeTaskStateStore()
    with pytest.raises(TolokaOperationFailed):
        run_try(store)
    failed_id = store.values[KEY]

    result, _ = run_try(store)

    assert result["status"] == "SUCCESS"
    assert result["id"] != failed_id
    assert store.values[KEY] == result["id"]
    assert emu.object("pool", "10")["status"] == "ARCHIVED"


def test_a_stored_id_toloka_no_longer_knows_archives_again(emu):
    store = FakeTaskStateStore()
    store.set(KEY, "00000000-0000-0000-0000-000000000000")

    result, _ = run_try(store)

    assert result["status"] == "SUCCESS"
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1


def test_an_archived_object_succeeds_with_none_and_stores_nothing(emu):
    emu.add_pool("10", project_id="1", status="ARCHIVED")
    store = FakeTaskStateStore()

    result, pushed = run_try(store)

    assert result is None
    assert "operation_id" not in pushed
    assert store.values == {}


@needs_task_state_store
def test_without_waiting_a_retry_reconnects_and_still_does_not_wait(emu):
    emu.operation_duration = 5
    store = FakeTaskStateStore()
    first, _ = run_try(store, wait_for_completion=False)

    second, pushed = run_try(store, wait_for_completion=False)

    assert first["status"] in ("PENDING", "RUNNING")
    assert second["id"] == first["id"] == pushed["operation_id"]
    assert second["status"] in ("PENDING", "RUNNING")
    assert archive_posts(emu) == 1


def test_durable_false_stores_nothing_and_a_retry_asks_toloka_again(emu):
    emu.operation_duration = 30
    store = FakeTaskStateStore()
    first, _ = run_try(store, durable=False, wait_for_completion=False)

    second, _ = run_try(store, durable=False, wait_for_completion=False)

    assert store.values == {}
    # The retry sent the archive request again; the hook found the running archive (layer 2).
    assert [r.status for r in emu.requests if r.method == "POST"] == [202, 409]
    assert second["id"] == first["id"]
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1


# -- no stored id: the hook finds the running archive ----------------------------------------------


def test_without_a_store_a_retry_waits_on_the_archive_already_running(stopped_emu, stopped_hook):
    emu, hook = stopped_emu, stopped_hook
    started = hook.archive_pool("10")  # the first try: it submitted, then its worker died
    end_the_archive_once_waited_on(emu)

    result, pushed = run_try()

    assert result["id"] == started["id"] == pushed["operation_id"]
    assert result["status"] == "SUCCESS"
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1


@needs_task_state_store
def test_a_lost_answer_is_found_and_waited_on(stopped_emu, stopped_hook):
    emu, hook = stopped_emu, stopped_hook
    emu.inject_fault("drop", path="/archive", when="after")
    end_the_archive_once_waited_on(emu)
    store = FakeTaskStateStore()

    result, _ = run_try(store, hook=hook)

    assert result["status"] == "SUCCESS"
    assert store.values[KEY] == result["id"]
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1


def test_an_archive_that_ends_between_the_refusal_and_the_look_up_is_not_an_error(emu, hook):
    # An archive that would run for ten minutes: the second request is refused (409) on any machine.
    emu.operation_duration = 600
    hook.archive_pool("10")
    # The look-up of running operations waits 3 s before it is handled; meanwhile, as soon as the refusal
    # is answered, the emulator's clock jumps past the archive's end: the look-up finds nothing running.
    emu.inject_fault("slow", delay=3.0, path="/operations", method="GET")
    refused = threading.Event()

    def end_the_archive_once_refused() -> None:
        while not any(r.method == "POST" and r.status == 409 for r in emu.requests):
            time.sleep(0.01)
        emu.advance_clock(601)
        refused.set()

    watcher = threading.Thread(target=end_the_archive_once_refused, daemon=True)
    watcher.start()

    assert hook.archive_pool("10") is None  # asked again: 204, already archived
    assert refused.is_set()
    # The refusal, the look-up that found nothing running, and the request asked again.
    traffic = [(r.method, r.status) for r in emu.requests if r.method == "POST" or "/operations" in r.path]
    assert traffic[:2] == [("POST", 202), ("POST", 409)]
    assert ("GET", 200) in traffic[2:-1]
    assert traffic[-1] == ("POST", 204)
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1


# -- deferrable: the stored id survives the trip to the triggerer ------------------------------------


@needs_task_state_store
def test_a_deferrable_retry_defers_again_on_the_stored_operation(emu):
    from airflow.providers.common.compat.sdk import TaskDeferred

    emu.operation_duration = 30
    store = FakeTaskStateStore()
    with pytest.raises(TaskDeferred) as first:
        run_try(store, deferrable=True)
    with pytest.raises(TaskDeferred) as second:
        run_try(store, deferrable=True)

    first_id = first.value.trigger.serialize()[1]["operation_id"]
    assert second.value.trigger.serialize()[1]["operation_id"] == first_id == store.values[KEY]
    assert archive_posts(emu) == 1


def test_a_running_archive_is_found_when_it_starts_running_between_the_two_reads(
    scripted_server, monkeypatch
):
    """Toloka refuses a second archive with OPERATION_ALREADY_EXISTS; the hook then reads PENDING and RUNNING
    operations. One that moves from PENDING to RUNNING between those two reads must still be found, without
    asking Toloka to archive again."""
    operation = {"id": "op-1", "type": "POOL.ARCHIVE", "parameters": {"pool_id": "10"}}
    reads: list[str] = []

    def toloka(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        json_type = {"Content-Type": "application/json"}
        if method == "POST":
            body = {"request_id": "r-1", "code": "OPERATION_ALREADY_EXISTS", "message": "already running"}
            return 409, json_type, json.dumps(body).encode()
        asked = parse_qs(urlsplit(path).query)["status"][0]
        reads.append(asked)
        status = "PENDING" if len(reads) == 1 else "RUNNING"  # it starts right after the first read
        items = [{**operation, "status": status}] if asked == status else []
        return 200, json_type, json.dumps({"items": items, "has_more": False}).encode()

    scripted_server.script = toloka
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", scripted_server.conn_json())

    found = TolokaHook().archive_pool("10")

    assert found is not None
    assert found["id"] == "op-1"
    assert [method for method, _, _ in scripted_server.received].count("POST") == 1
