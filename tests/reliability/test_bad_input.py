"""Bad user input fails before any request; malformed answers fail clearly; nothing goes where it should not.

What ``tests/unit`` already checks value by value (``validate_id``, ``validate_seconds``, connection
parsing) is checked here end to end: through the operators, the sensor and the hook, with the server
recording that nothing was sent.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaApiError, TolokaError
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor

OPERATORS = [
    (TolokaArchivePoolOperator, "pool_id"),
    (TolokaArchiveTrainingOperator, "training_id"),
    (TolokaArchiveProjectOperator, "project_id"),
]
BAD_IDS = [
    "",
    " ",
    "12 ",
    "..",
    "5/../../projects/7",
    "a/b",
    "%2e%2e",
    "1%2F2",
    "пул",
    "x" * 10_000,
    None,
    1.5,
    math.nan,
    True,
]


def run(operator: Any) -> Any:
    return operator.execute({"ti": RecordingTI()})


# -- ids ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize(("operator_cls", "field"), OPERATORS, ids=lambda v: getattr(v, "__name__", v))
def test_bad_ids_fail_naming_the_parameter_before_any_request(toloka_conn, operator_cls, field, bad):
    operator = operator_cls(task_id="t", **{field: bad})

    with pytest.raises(ValueError, match=rf"^{field}=") as err:
        run(operator)

    assert len(str(err.value)) < 400, "a 10 kB id must not be echoed whole"
    assert toloka_conn.requests == []


@pytest.mark.parametrize("bad", ["../operations", "a b", "пул", "x" * 10_000, 1.5])
def test_sensor_refuses_a_bad_operation_id_before_any_request(toloka_conn, bad):
    sensor = TolokaOperationSensor(task_id="s", operation_id=bad)
    with pytest.raises(ValueError, match=r"^operation_id="):
        sensor.poke({})
    assert toloka_conn.requests == []


# -- seconds and counts -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["poll_interval", "timeout"])
@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, "10"])
def test_operators_refuse_bad_seconds_when_the_dag_is_parsed(name, bad):
    with pytest.raises(ValueError, match=rf"^{name}=.*positive number of seconds"):
        TolokaArchivePoolOperator(task_id="t", pool_id="1", **{name: bad})


@pytest.mark.parametrize("bad", [0, -1, math.nan])
def test_hook_wait_refuses_bad_seconds_before_any_request(toloka_conn, hook, bad):
    with pytest.raises(ValueError, match=r"^poll_interval="):
        hook.wait_for_operation("op", poll_interval=bad)
    with pytest.raises(ValueError, match=r"^timeout="):
        hook.wait_for_operation("op", timeout=bad)
    assert toloka_conn.requests == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"timeout": math.inf}, "timeout"),
        ({"retry_min_wait": -1}, "retry_min_wait"),
        ({"retry_min_wait": 0}, "retry_min_wait"),
        ({"retry_max_wait": math.nan}, "retry_max_wait"),
        ({"retry_max_wait": math.inf}, "retry_max_wait"),
    ],
)
def test_hook_refuses_bad_settings_when_built(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        TolokaHook(**kwargs)


# -- connection fields --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"password": None}, "has no token"),
        ({"password": "   "}, "has no token"),
        ({"extra": {"environment": "staging"}}, r"extra.environment='staging' is not valid"),
        ({"extra": {"auth_scheme": "Bearer"}}, r"extra.auth_scheme='Bearer' is not valid"),
        ({"extra": {"max_retries": "many"}}, r"extra.max_retries='many' is not valid: pass a whole number"),
        ({"extra": {"timeout": "-5"}}, r"extra.timeout='-5' is not valid: pass a positive number"),
        (
            {"extra": {"requests_per_second": 0}},
            r"extra.requests_per_second=0 is not valid: pass the requests",
        ),
        ({"extra": {"requests_per_second": "NaN"}}, r"extra.requests_per_second='NaN' is not valid"),
        ({"extra": {"requests_per_second": 301}}, r"requests_per_second=301 is not valid.*most 300"),
        ({"host": "http://10.0.0.5:8080"}, "plain http:// would send the token unencrypted"),
        ({"host": "http://toloka.dev"}, "plain http:// would send the token unencrypted"),
        ({"host": "https://h:notaport"}, "the port is not a number"),
        ({"host": "ftp://127.0.0.1"}, "use an https:// URL"),
        ({"host": "https://user:pw@toloka.dev"}, "give a URL root"),
    ],
)
def test_bad_connection_fields_fail_before_any_request(scripted_server, monkeypatch, conn, expected):
    base = {"conn_type": "toloka", "host": scripted_server.url, "password": "secret-token-123"}
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps({**base, **conn}))

    with pytest.raises(ValueError, match=expected) as err:
        run(TolokaArchivePoolOperator(task_id="t", pool_id="10"))

    assert "toloka_default" in str(err.value)
    assert "secret-token-123" not in str(err.value)
    assert scripted_server.received == []


# -- malformed answers --------------------------------------------------------------------------------


@pytest.fixture
def scripted_hook(scripted_server, monkeypatch) -> TolokaHook:
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", scripted_server.conn_json())
    return TolokaHook(max_retries=2, retry_min_wait=0.01, retry_max_wait=0.02)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (202, {}, "application/json", "without an operation id"),
        (202, {"status": "RUNNING"}, "application/json", "without an operation id"),
        (202, [], "application/json", "without an operation id"),
        (202, "null", "application/json", "not JSON"),
        (200, "<html><body>Welcome to nginx</body></html>", "text/html", "not JSON"),
        (202, "not json {", "application/json", "not JSON"),
    ],
)
def test_a_malformed_archive_answer_fails_clearly_after_one_request(
    scripted_server, scripted_hook, status, body, content_type, expected
):
    scripted_server.set_answer(status, body, content_type)
    with pytest.raises(TolokaError, match=expected) as err:
        scripted_hook.archive_pool("10")
    assert len(str(err.value)) < 600
    assert len(scripted_server.received) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"id": "op-1", "status": "PAUSED"}, "status 'PAUSED', which is none of PENDING"),
        ({"id": "op-1"}, "status None, which is none of PENDING"),
        ([], "where an operation object was expected"),
        ("null", "not JSON"),
        ("<html>" + "x" * 10_000, "not JSON"),
    ],
)
def test_a_malformed_operation_fails_the_wait_clearly(scripted_server, scripted_hook, body, expected):
    scripted_server.set_answer(200, body)
    with pytest.raises(TolokaError, match=expected) as err:
        scripted_hook.wait_for_operation("op-1", poll_interval=0.01)
    assert len(str(err.value)) < 600
    assert len(scripted_server.received) == 1


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found")]
)
def test_an_html_error_page_is_a_refusal_not_retried(scripted_server, scripted_hook, status, reason):
    scripted_server.set_answer(status, f"<html><h1>{status} {reason}</h1></html>", "text/html")
    with pytest.raises(TolokaApiError, match=rf"HTTP {status}.*non-JSON answer \(text/html\)"):
        scripted_hook.archive_pool("10")
    assert len(scripted_server.received) == 1


def test_an_html_gateway_page_is_retried_then_named(scripted_server, scripted_hook):
    scripted_server.set_answer(502, "<html><h1>502 Bad Gateway</h1></html>", "text/html")
    with pytest.raises(TolokaError, match=r"failed after 3 attempts; last fault: HTTP 502"):
        scripted_hook.archive_pool("10")
    assert len(scripted_server.received) == 3


# -- nothing leaves for an address the user did not configure -------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_not_followed_and_the_token_stays(
    scripted_server, other_server, scripted_hook, status
):
    scripted_server.set_answer(status, "", Location=f"{other_server.url}/api/v1/pools/10/archive")

    with pytest.raises(TolokaError, match=rf"HTTP {status} redirecting to .*not followed") as err:
        scripted_hook.archive_pool("10")

    assert other_server.received == []
    assert len(scripted_server.received) == 1
    assert scripted_server.received[0][2]["Authorization"] == "OAuth scripted-secret-token"
    assert "scripted-secret-token" not in str(err.value)


@pytest.mark.parametrize("status", [302, 307])
async def test_the_trigger_does_not_follow_a_redirect_either(
    scripted_server, other_server, monkeypatch, status
):
    """The triggerer reads over httpx, not requests: its refusal to follow needs its own proof."""
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", scripted_server.conn_json())
    scripted_server.set_answer(status, "", Location=f"{other_server.url}/api/v1/operations/op-1")

    [event] = [e.payload async for e in TolokaOperationTrigger("op-1", poll_interval=0.05).run()]

    assert event["status"] == "error"
    assert f"HTTP {status} redirecting to '{other_server.url}/api/v1/operations/op-1'" in event["message"]
    assert "not followed" in event["message"]
    assert other_server.received == []
    assert [(m, p) for m, p, _ in scripted_server.received] == [("GET", "/api/v1/operations/op-1")]
    assert "scripted-secret-token" not in json.dumps(event)


def test_requests_go_only_to_the_configured_host(scripted_server, other_server, scripted_hook):
    scripted_server.set_answer(200, {"id": "op-1", "status": "SUCCESS"})
    scripted_hook.wait_for_operation("op-1")
    scripted_hook.archive_pool("10")
    assert other_server.received == []
    assert [(m, p) for m, p, _ in scripted_server.received] == [
        ("GET", "/api/v1/operations/op-1"),
        ("POST", "/api/v1/pools/10/archive"),
    ]
