"""``act_under_account_id``: every request the provider sends carries it, over real HTTP to the emulator.

The emulator logs each request's ``X-Act-Under-Account-ID`` and refuses (403) an account the token's user
is not a member of, so "every request carried it" is read from what Toloka would have seen, path by path.
"""

from __future__ import annotations

import json
import logging

import pendulum
import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaApiError
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.housekeeping import run as housekeeping_run
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator, TolokaArchiveProjectOperator
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

ACCOUNT = "shared-acc-42"


def conn_json(emu, **extra) -> str:
    return json.dumps({"conn_type": "toloka", "host": emu.url, "password": emu.token, "extra": extra})


@pytest.fixture
def emu(toloka_conn, monkeypatch):
    toloka_conn.accounts = [ACCOUNT]
    toloka_conn.operation_duration = 0.1
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    toloka_conn.add_project("7")
    for pool_id in ("70", "71", "72"):
        toloka_conn.add_pool(pool_id, project_id="7", status="CLOSED")
    toloka_conn.add_training("79", project_id="7", status="CLOSED", linked_pool_ids=("70",))
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(toloka_conn, act_under_account_id=ACCOUNT))
    return toloka_conn


def accounts_sent(emu) -> set[str | None]:
    assert emu.requests, "nothing was sent"
    return {record.account for record in emu.requests}


def test_the_hook_sends_the_account_with_every_request(emu):
    hook = TolokaHook()
    operation = hook.archive_pool("10")
    hook.wait_for_operation(operation["id"], poll_interval=0.1, timeout=30)
    list(hook.list_pools("1"))
    assert hook.test_connection()[0]
    assert accounts_sent(emu) == {ACCOUNT}
    assert {r.status for r in emu.requests} <= {200, 202}


def test_the_archive_operator_and_the_sensor_send_it(emu):
    ti = RecordingTI()
    TolokaArchivePoolOperator(task_id="a", pool_id="10", wait_for_completion=False).execute({"ti": ti})
    sensor = TolokaOperationSensor(task_id="s", operation_id=ti.pushed["operation_id"], poke_interval=0.1)
    sensor.execute({"ti": RecordingTI()})
    assert accounts_sent(emu) == {ACCOUNT}


def test_the_cascade_sends_it_from_every_worker_and_the_watcher(emu):
    operator = TolokaArchiveProjectOperator(
        task_id="c", project_id="7", cascade=True, poll_interval=0.1, max_concurrency=3
    )
    summary = operator.execute({"ti": RecordingTI()})
    assert summary["project"]["operation"]["status"] == "SUCCESS"
    assert accounts_sent(emu) == {ACCOUNT}


def test_housekeeping_sends_it(emu, monkeypatch):
    # The task counts idle days up to the account's clock, which the test moves forward.
    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(emu.now))
    emu.advance_clock(60 * 86400)
    summary = TolokaHousekeepingOperator(task_id="h", min_idle_days=30, poll_interval=0.1).execute(
        {"ti": RecordingTI()}
    )
    assert sorted(summary["archived"]) == ["1", "7"]
    assert accounts_sent(emu) == {ACCOUNT}


def test_an_empty_value_means_the_tokens_own_account(emu, monkeypatch):
    """Airflow's form saves an untouched field as "": that is no header, not an empty one."""
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(emu, act_under_account_id=""))
    TolokaHook().get_pool("10")
    assert accounts_sent(emu) == {None}


def test_an_account_the_user_is_not_a_member_of_is_refused_once_with_a_403(emu, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(emu, act_under_account_id="someone-else"))
    with pytest.raises(TolokaApiError) as refused:
        TolokaHook().get_pool("10")
    assert (refused.value.status_code, refused.value.code) == (403, "ACCESS_DENIED")
    assert "someone-else" in str(refused.value)
    assert "with act_under_account_id, check that the token's user is a member" in str(refused.value)
    assert [(r.status, r.account) for r in emu.requests] == [(403, "someone-else")], "a 403 is not retried"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("acc 42", "whitespace"),
        (" acc42", "whitespace"),
        ("acc42\n", "whitespace"),
        ("acc\x0742", "control characters"),
        ("a" * 129, "129 characters long, over 128"),
        ("аккаунт", "ASCII"),
        (["acc42"], "as a string"),
    ],
)
def test_a_bad_value_is_refused_before_any_request_naming_the_field_and_the_fix(
    emu, monkeypatch, value, problem
):
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn_json(emu, act_under_account_id=value))
    hook = TolokaHook()
    with pytest.raises(ValueError, match="extra.act_under_account_id=") as refused:
        hook.get_pool("10")
    assert problem in str(refused.value)
    ok, message = TolokaHook().test_connection()
    assert not ok
    assert "act_under_account_id" in message
    assert emu.requests == [], "refused before anything was sent"


def test_the_account_stays_out_of_log_lines_that_could_hold_the_token(emu, caplog, capfd):
    """Retry warnings name the fault, not the headers: neither the token nor the account appears."""
    emu.inject_fault("503", count=1)
    with caplog.at_level(logging.DEBUG):
        TolokaHook(retry_min_wait=0.01, retry_max_wait=0.02).get_pool("10")
    text = caplog.text + "".join(capfd.readouterr())
    assert "HTTP 503" in text
    assert emu.token not in text
    assert ACCOUNT not in text
    assert accounts_sent(emu) == {ACCOUNT}
