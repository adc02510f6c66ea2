"""Refusals (400, 401, 403, 404, 409) answer the same every time: the task fails at once, never retried,
and the error says what to check."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaApiError
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator


def refuse_with_400(emu, monkeypatch):
    emu.inject_fault("400", path="/archive")
    return "10"


def refuse_with_401(emu, monkeypatch):
    conn = json.loads(emu.airflow_conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps({**conn, "password": "revoked-token"}))
    return "10"


def refuse_with_403(emu, monkeypatch):
    emu.inject_fault("403", path="/archive")
    return "10"


def refuse_with_404(emu, monkeypatch):
    return "999"


def refuse_with_409(emu, monkeypatch):
    emu.add_pool("10", project_id="1", status="OPEN")
    return "10"


@pytest.mark.parametrize(
    ("arrange", "status", "code", "hint"),
    [
        (refuse_with_400, 400, "VALIDATION_ERROR", "check the id or parameter its message names"),
        (refuse_with_401, 401, "AUTHENTICATION_ERROR", "check the token in the Toloka connection"),
        (refuse_with_403, 403, "ACCESS_DENIED", "of the requester account that owns it"),
        (refuse_with_404, 404, "DOES_NOT_EXIST", "check the id: Toloka does not know it"),
        (refuse_with_409, 409, "INAPPROPRIATE_STATUS", "close the object first"),
    ],
)
def test_a_refusal_fails_the_task_at_once_with_one_archive_request_and_a_hint(
    toloka_conn, monkeypatch, arrange, status, code, hint
):
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    pool_id = arrange(toloka_conn, monkeypatch)
    operator = TolokaArchivePoolOperator(task_id="archive", pool_id=pool_id)

    with pytest.raises(TolokaApiError) as err:
        operator.execute({"ti": RecordingTI()})

    assert (err.value.status_code, err.value.code) == (status, code)
    assert hint in str(err.value).partition(". Hint: ")[2]
    archive_requests = [r for r in toloka_conn.requests if r.path.endswith("/archive")]
    assert [r.status for r in archive_requests] == [status]
    repeated = [key for key, n in Counter((r.method, r.path) for r in toloka_conn.requests).items() if n > 1]
    assert repeated == [], "a refusal was retried"
    assert toloka_conn.operations() == []


def test_a_conflict_code_without_a_hint_of_its_own_gets_the_general_one(scripted_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", scripted_server.conn_json())
    scripted_server.set_answer(409, {"code": "CONFLICT_STATE", "message": "Conflict", "request_id": "r-1"})
    operator = TolokaArchivePoolOperator(task_id="archive", pool_id="10")

    with pytest.raises(TolokaApiError) as err:
        operator.execute({"ti": RecordingTI()})

    assert str(err.value).endswith(
        "HTTP 409 CONFLICT_STATE: Conflict (request_id r-1). Hint: the object's status does not allow "
        "this: check it (and its pools' and trainings') in Toloka"
    )
