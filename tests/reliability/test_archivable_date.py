"""A refusal that says when the object becomes archivable: the next check goes to that date.

Toloka documents no such field; the provider reads ``payload.archivable_after`` when a refusal carries
it (docs/operators.md). A scripted server sends the 409 with whatever date (or junk) a test needs.
"""

from __future__ import annotations

import json
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from task_instance_stub import RecordingTI

from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator

POOL = {"id": "10", "project_id": "1", "status": "CLOSED"}


def refuse_with(server: Any, payload: Any) -> None:
    refusal = {
        "code": "THERE_IS_REJECTED_ASSIGNMENT",
        "message": "The pool has rejected assignments",
        "request_id": "req-1",
        "payload": payload,
    }

    def script(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        body = refusal if method == "POST" else POOL  # the GET reads the pool for the web-UI link
        return (
            409 if method == "POST" else 200,
            {"Content-Type": "application/json"},
            json.dumps(body).encode(),
        )

    server.script = script


def next_check(server: Any, monkeypatch: pytest.MonkeyPatch) -> pendulum.DateTime:
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", server.conn_json())
    operator = TolokaArchivePoolOperator(
        task_id="p", pool_id="10", wait_until_archivable=True, archivable_check_interval=3600
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": RecordingTI()})
    assert deferred.value.method_name == "check_archivable_again"
    return deferred.value.trigger.moment


def test_the_next_check_goes_to_the_date_toloka_gives(scripted_server, monkeypatch):
    # Later than the hour-long interval, and naive (read as UTC, like Toloka's other dates).
    archivable = pendulum.now("UTC").add(days=3).replace(microsecond=0)
    refuse_with(scripted_server, {"archivable_after": archivable.isoformat().replace("+00:00", "")})
    assert next_check(scripted_server, monkeypatch) == archivable


def test_a_date_already_past_checks_again_after_a_minute_not_at_once(scripted_server, monkeypatch):
    refuse_with(scripted_server, {"archivable_after": pendulum.now("UTC").subtract(hours=1).isoformat()})
    before = pendulum.now("UTC")
    moment = next_check(scripted_server, monkeypatch)
    assert before.add(seconds=60) <= moment <= pendulum.now("UTC").add(seconds=60)


@pytest.mark.parametrize("payload", [None, {}, {"archivable_after": "soon"}, {"archivable_after": 1}, ["x"]])
def test_without_a_readable_date_the_next_check_is_after_the_interval(scripted_server, monkeypatch, payload):
    refuse_with(scripted_server, payload)
    before = pendulum.now("UTC")
    moment = next_check(scripted_server, monkeypatch)
    assert before.add(hours=1) <= moment <= pendulum.now("UTC").add(hours=1)
