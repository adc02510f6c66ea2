"""The hook against the Toloka emulator over real HTTP: what a DAG author sees from each answer."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_toloka import __version__
from airflow_provider_toloka.exceptions import (
    TolokaApiError,
    TolokaOperationFailed,
    TolokaOperationTimeout,
    TolokaRetriesExhausted,
)
from airflow_provider_toloka.hooks.toloka import TolokaHook


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    toloka_conn.add_pool("11", project_id="1", status="OPEN")
    toloka_conn.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=("10",))
    return toloka_conn


def test_init_reads_no_connection_and_sends_nothing(emu, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TOLOKA_DEFAULT")
    TolokaHook(toloka_conn_id="does_not_exist")
    assert emu.requests == []


def test_archive_pool_returns_the_operation_and_wait_returns_success(emu, hook):
    operation = hook.archive_pool(10)
    assert operation["type"] == "POOL.ARCHIVE"
    assert operation["status"] in ("PENDING", "RUNNING")
    assert operation["parameters"] == {"pool_id": "10"}
    final = hook.wait_for_operation(operation["id"], poll_interval=0.1, timeout=10)
    assert final["status"] == "SUCCESS"
    assert hook.get_pool("10")["status"] == "ARCHIVED"


def test_session_identifies_the_provider(hook):
    assert hook.get_conn().headers["User-Agent"] == f"airflow-provider-toloka/{__version__}"


def test_api_key_scheme(emu, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", emu.airflow_conn_json(auth_scheme="ApiKey"))
    assert TolokaHook().get_pool("10")["id"] == "10"


@pytest.mark.parametrize("kind", ["pool", "training", "project"])
def test_already_archived_answers_none(emu, hook, kind):
    emu.add_project("2", status="ARCHIVED")
    emu.add_pool("12", project_id="2", status="ARCHIVED")
    emu.add_training("22", project_id="2", status="ARCHIVED", linked_pool_ids=("12",))
    object_id = {"pool": "12", "training": "22", "project": "2"}[kind]
    assert getattr(hook, f"archive_{kind}")(object_id) is None
    assert [r.status for r in emu.requests] == [204]


def test_conflict_surfaces_toloka_code_message_request_id_and_a_hint(emu, hook):
    with pytest.raises(TolokaApiError) as err:
        hook.archive_pool("11")
    error = err.value
    assert (error.status_code, error.code) == (409, "INAPPROPRIATE_STATUS")
    assert error.request_id
    assert error.message
    text = str(error)
    assert text.startswith("Toloka refused POST /pools/11/archive: HTTP 409 INAPPROPRIATE_STATUS: ")
    assert f"(request_id {error.request_id})" in text
    assert "close the object first" in text
    assert len(emu.requests) == 1, "a 409 is never retried"


def test_training_with_unarchived_pools_explains_the_order(emu, hook):
    with pytest.raises(TolokaApiError, match="archive the main pools linked to this training first"):
        hook.archive_training("20")


def test_project_with_unarchived_pools_explains_the_order(emu, hook):
    with pytest.raises(TolokaApiError, match="archive every pool and training of the project first"):
        hook.archive_project("1")


def test_rejection_window(emu, hook):
    emu.add_pool("13", project_id="1", status="CLOSED", last_rejection=datetime.now(UTC) - timedelta(days=2))
    with pytest.raises(TolokaApiError, match="THERE_IS_REJECTED_ASSIGNMENT.*9 days after the last rejection"):
        hook.archive_pool("13")


def test_wrong_token_fails_once_without_echoing_it(emu, monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOLOKA_DEFAULT",
        json.dumps({"conn_type": "toloka", "host": emu.url, "password": "wrong-token-7d1e"}),
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(TolokaApiError) as err:
        TolokaHook().archive_pool("10")
    assert (err.value.status_code, err.value.code) == (401, "AUTHENTICATION_ERROR")
    assert "check the token" in str(err.value)
    assert "wrong-token-7d1e" not in str(err.value)
    assert "wrong-token-7d1e" not in caplog.text
    assert len(emu.requests) == 1


def test_429_is_retried_after_the_retry_after_header(emu, hook, capfd):
    emu.inject_fault("429", count=1, path="/archive", retry_after=1)
    operation = hook.archive_pool("10")
    assert operation["type"] == "POOL.ARCHIVE"
    assert [r.status for r in emu.requests] == [429, 202]
    # Airflow's task logging goes through structlog to the console, not to caplog. The wait is the
    # header's 1 s (plus a little jitter), not the hook's own 0.01 s back-off.
    assert re.search(r"HTTP 429 TOO_MANY_REQUESTS; retry 1 of 5 in 1\.[0-2] s", capfd.readouterr().out)


@pytest.mark.parametrize("fault", ["500", "502", "503", "504", "drop"])
def test_transient_faults_are_retried_until_success(emu, hook, fault):
    emu.inject_fault(fault, count=2)
    assert hook.get_pool("10")["status"] == "CLOSED"
    assert len(emu.requests) == 3


def test_faults_past_the_budget_name_the_fault_and_attempts(emu, toloka_conn):
    emu.inject_fault("503", count=10)
    hook = TolokaHook(max_retries=2, retry_min_wait=0.01, retry_max_wait=0.02)
    with pytest.raises(
        TolokaRetriesExhausted, match=r"GET /pools/10 failed after 3 attempts; last fault: HTTP 503"
    ):
        hook.get_pool("10")
    assert len(emu.requests) == 3


def test_read_timeout_is_retried(emu, toloka_conn, capfd):
    # The first answer is held for a minute, far past the test; the hook stops waiting after 1 s and asks
    # again. (Should a busy machine answer a later attempt late too, that one is retried as well.)
    emu.inject_fault("slow", count=1, delay=60.0)
    hook = TolokaHook(timeout=1.0, retry_min_wait=0.01, retry_max_wait=0.02)

    assert hook.get_pool("10")["id"] == "10"

    assert "ReadTimeout" in capfd.readouterr().out.partition("retry 1 of 5")[0]
    # The emulator logs a request when it has answered: the held one is not in the log, the answered
    # retry is, so the retry was answered while the first attempt still waited.
    answered = emu.requests
    assert answered, "no attempt was answered"
    assert [(r.path, r.duration < 60) for r in answered] == [("/api/v1/pools/10", True)] * len(answered)
    assert answered[-1].status == 200


def test_connection_refused(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOLOKA_DEFAULT",
        '{"conn_type": "toloka", "host": "http://127.0.0.1:9", "password": "tok-123456"}',
    )
    hook = TolokaHook(max_retries=1, retry_min_wait=0.01, retry_max_wait=0.02)
    with pytest.raises(TolokaRetriesExhausted, match=r"failed after 2 attempts; last fault: ConnectionError"):
        hook.get_operation("op-1")


@pytest.mark.parametrize("bad", ["5/../../projects/7", "", "a b", "%2e", None])
def test_bad_ids_send_nothing(emu, hook, bad):
    with pytest.raises(ValueError, match="pool_id="):
        hook.archive_pool(bad)
    assert emu.requests == []


def test_retry_of_a_running_archive_waits_on_the_same_operation(emu, hook):
    emu.operation_duration = 5
    first = hook.archive_pool("10")
    second = hook.archive_pool("10")
    assert second["id"] == first["id"]
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1


def test_answer_lost_after_the_archive_started(emu, hook):
    emu.operation_duration = 5
    emu.inject_fault("drop", count=1, path="/archive", when="after")
    operation = hook.archive_pool("10")
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1
    assert operation["id"] == emu.operations(type="POOL.ARCHIVE")[0]["id"]


def test_failed_operation_raises_with_details_and_log(emu, hook):
    emu.fail_next("pool", "10", details={"reason": "storage unavailable"})
    operation = hook.archive_pool("10")
    with pytest.raises(
        TolokaOperationFailed, match=r"POOL.ARCHIVE.*ended in FAIL.*storage unavailable"
    ) as err:
        hook.wait_for_operation(operation["id"], poll_interval=0.1)
    assert err.value.operation["id"] == operation["id"]


def test_wait_times_out_naming_the_operation(emu, hook):
    emu.operation_duration = 30
    operation = hook.archive_pool("10")
    still = rf"operation {operation['id']} \(POOL.ARCHIVE\) is still (PENDING|RUNNING) at \d+% after 1 s"
    with pytest.raises(TolokaOperationTimeout, match=still):
        hook.wait_for_operation(operation["id"], poll_interval=0.2, timeout=1)
    # It gave up on its own deadline, while the archive still ran in Toloka.
    [running] = emu.operations(type="POOL.ARCHIVE")
    assert running["status"] in ("PENDING", "RUNNING")


def test_wait_backs_off_instead_of_busy_polling(emu, hook, monkeypatch):
    emu.operation_duration = 2.5
    operation = hook.archive_pool("10")
    emu.clear_requests()
    pauses: list[float] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():  # the hook's, not the emulator's
            pauses.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", recording_sleep)
    final = hook.wait_for_operation(operation["id"], poll_interval=1)

    assert final["status"] == "SUCCESS"
    # One pause between every two polls, growing from 0.5 s to the poll interval: 0.5, 1, 1, ...
    assert len(emu.requests) == len(pauses) + 1
    assert pauses == [0.5, 1, 1, 1, 1, 1, 1, 1][: len(pauses)]
    assert pauses, "a 2.5 s archive is not finished at the first poll"


def test_list_pools_pages_through_every_pool(emu, hook):
    for n in range(100, 800):
        emu.add_pool(str(n), project_id="7", status="CLOSED")
    emu.add_project("7")
    ids = [pool["id"] for pool in hook.list_pools("7")]
    assert ids == [str(n) for n in range(100, 800)]
    assert len(emu.requests) == 3, "700 pools in pages of 300"
    assert [p["id"] for p in hook.list_pools("1", status="OPEN")] == ["11"]


def test_list_projects_pages_through_the_active_projects(emu, hook):
    for n in range(100, 401):  # 301 active projects: two pages
        emu.add_project(str(n))
    emu.add_project("999", status="ARCHIVED")
    emu.clear_requests()

    ids = [project["id"] for project in hook.list_projects()]

    assert ids == ["1", *(str(n) for n in range(100, 401))]
    assert [r.path for r in emu.requests] == ["/api/v1/projects"] * 2, "302 projects in pages of 300"
    assert [p["id"] for p in hook.list_projects(status="ARCHIVED")] == ["999"]
    assert len(list(hook.list_projects(status=None))) == 303


def test_list_projects_refuses_an_unknown_status_before_any_request(emu, hook):
    with pytest.raises(ValueError, match=r"status='OPEN' is not a Toloka project status: pass one of ACTIVE"):
        list(hook.list_projects(status="OPEN"))
    assert emu.requests == []


def test_test_connection(emu, hook, monkeypatch):
    ok, message = hook.test_connection()
    assert ok
    assert emu.url in message
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOLOKA_DEFAULT",
        json.dumps({"conn_type": "toloka", "host": emu.url, "password": "nope-nope"}),
    )
    ok, message = TolokaHook().test_connection()
    assert not ok
    assert "AUTHENTICATION_ERROR" in message


def test_token_never_in_logs_or_errors(emu, hook, caplog, capfd):
    emu.inject_fault("503", count=1)
    with caplog.at_level(logging.DEBUG):
        hook.archive_pool("10")
        with pytest.raises(TolokaApiError) as err:
            hook.archive_pool("11")
    captured = capfd.readouterr()
    for text in (caplog.text, captured.out, captured.err, str(err.value), repr(hook), repr(hook.settings)):
        assert emu.token not in text


class _PacerClock:
    """The throttle's clock: ``sleep`` moves it, so the pace is counted, not timed."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("declared", [None, 5])
def test_a_hook_keeps_to_the_declared_rate_from_its_first_request(emu, declare_rate, monkeypatch, declared):
    from airflow_provider_toloka import throttle

    clock = _PacerClock()
    monkeypatch.setattr(throttle, "time", clock)
    if declared is not None:
        declare_rate(declared)
    hook = TolokaHook()  # no throttle given: a plain archive or a sensor

    for _ in range(6):
        hook.get_pool("10")

    assert len(emu.requests) == 6
    if declared is None:
        assert clock.sleeps == []  # unset: nothing waits until Toloka answers 429
    else:
        assert clock.sleeps == pytest.approx([1.02 / declared] * 5)


@pytest.mark.parametrize("bad", [0, -1, "fast", "nan", 301])
def test_a_bad_declared_rate_is_refused_before_any_request(emu, declare_rate, bad):
    declare_rate(bad)

    with pytest.raises(ValueError, match=rf"extra\.requests_per_second={re.escape(repr(bad))} is not valid"):
        TolokaHook().archive_pool(10)
    ok, message = TolokaHook().test_connection()

    assert not ok
    assert "above 0 and at most 300" in message
    assert emu.requests == []
