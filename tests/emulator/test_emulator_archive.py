"""Archiving and closing over real HTTP: the statuses, bodies and effects a client of Toloka would meet."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import requests

TIME_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")


@pytest.mark.parametrize(
    "authorization",
    [None, "OAuth wrong-token", "ApiKey wrong-token", "Bearer test-token", "test-token"],
)
def test_requests_without_a_valid_token_get_401(toloka_emulator, authorization):
    toloka_emulator.add_pool("10", project_id="1")
    headers = {} if authorization is None else {"Authorization": authorization}

    response = requests.post(f"{toloka_emulator.url}/api/v1/pools/10/archive", headers=headers, timeout=5)

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "AUTHENTICATION_ERROR"
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert toloka_emulator.operations() == []


@pytest.mark.parametrize("scheme", ["OAuth", "ApiKey"])
def test_both_authorization_schemes_are_accepted(toloka_emulator, scheme):
    toloka_emulator.add_pool("10", project_id="1")
    headers = {"Authorization": f"{scheme} {toloka_emulator.token}"}

    response = requests.get(f"{toloka_emulator.url}/api/v1/pools/10", headers=headers, timeout=5)

    assert response.status_code == 200
    assert response.json()["status"] == "CLOSED"


def test_archive_runs_pending_then_running_then_success_and_archives_the_pool(
    stopped_clock_emulator, stopped_api
):
    emulator, api = stopped_clock_emulator, stopped_api
    emulator.operation_duration = 1.5  # PENDING until 0.15 s, RUNNING until 1.5 s, of the emulator's time
    emulator.add_pool("10", project_id="1")

    submitted = api.post("/pools/10/archive")

    assert submitted.status_code == 202
    operation = submitted.json()
    assert set(operation) == {
        "id", "type", "status", "submitted", "started", "finished", "progress", "parameters", "details",
    }  # fmt: skip
    assert operation["type"] == "POOL.ARCHIVE"
    assert operation["status"] == "PENDING"
    assert operation["progress"] == 0
    assert (operation["started"], operation["finished"]) == (None, None)
    assert TIME_FORMAT.fullmatch(operation["submitted"])
    assert operation["parameters"] == {"pool_id": "10"}
    assert operation["details"] == {}

    def read_after(seconds):
        emulator.advance_clock(seconds)
        return api.get(f"/operations/{operation['id']}").json()

    early, later = read_after(0.5), read_after(0.5)
    assert (early["status"], later["status"]) == ("RUNNING", "RUNNING")
    assert TIME_FORMAT.fullmatch(early["started"])
    assert early["finished"] is None
    assert 0 < early["progress"] < later["progress"] < 100
    assert api.get("/pools/10").json()["status"] == "CLOSED"  # the effect waits for completion

    done = read_after(0.5)
    assert done["status"] == "SUCCESS"
    assert done["progress"] == 100
    assert TIME_FORMAT.fullmatch(done["finished"])
    assert done["submitted"] <= done["started"] <= done["finished"]
    assert api.get("/pools/10").json()["status"] == "ARCHIVED"
    assert emulator.object("pool", "10")["status"] == "ARCHIVED"


def test_zero_duration_answers_success_at_once(toloka_emulator, api):
    toloka_emulator.operation_duration = 0
    toloka_emulator.add_pool("10", project_id="1")

    operation = api.post("/pools/10/archive").json()

    assert operation["status"] == "SUCCESS"
    assert operation["progress"] == 100
    assert operation["started"] == operation["finished"] == operation["submitted"]
    assert toloka_emulator.object("pool", "10")["status"] == "ARCHIVED"


@pytest.mark.parametrize("kind", ["pools", "trainings", "projects"])
def test_archiving_an_archived_object_is_an_empty_204(toloka_emulator, api, kind):
    toloka_emulator.add_project("1", status="ARCHIVED")
    toloka_emulator.add_pool("1", project_id="1", status="ARCHIVED")
    toloka_emulator.add_training("1", project_id="1", status="ARCHIVED")

    response = api.post(f"/{kind}/1/archive")

    assert response.status_code == 204
    assert response.content == b""
    assert toloka_emulator.operations() == []


@pytest.mark.parametrize("path", ["/pools/99/archive", "/trainings/99/archive", "/projects/99/archive"])
def test_archiving_an_unknown_object_is_404(api, path):
    response = api.post(path)

    assert response.status_code == 404
    assert response.json()["code"] == "DOES_NOT_EXIST"
    assert "99" in response.json()["message"]


@pytest.mark.parametrize("status", ["OPEN", "LOCKED"])
def test_archiving_a_pool_that_is_not_closed_is_inappropriate_status(toloka_emulator, api, status):
    toloka_emulator.add_pool("10", project_id="1", status=status)

    response = api.post("/pools/10/archive")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "INAPPROPRIATE_STATUS"
    assert body["payload"] == {"appropriate_statuses": ["CLOSED"], "status": status}
    assert "close it first" in body["message"]


def test_a_rejection_less_than_9_days_ago_blocks_archiving_and_its_date_stays_inside(toloka_emulator, api):
    now = toloka_emulator.now
    rejected = now - dt.timedelta(days=2)
    toloka_emulator.add_pool("10", project_id="1", last_rejection=rejected)
    toloka_emulator.add_pool("11", project_id="1", last_rejection=now - dt.timedelta(days=10))

    blocked = api.post("/pools/10/archive")

    assert blocked.status_code == 409
    assert blocked.json()["code"] == "THERE_IS_REJECTED_ASSIGNMENT"
    # The rejection date is inner state: neither the refusal nor the pool shows it.
    assert "payload" not in blocked.json()
    assert "last_rejection" not in api.get("/pools/10").json()
    stamp = rejected.replace(tzinfo=None).isoformat(timespec="milliseconds")
    assert stamp not in blocked.text + api.get("/pools/10").text
    assert api.post("/pools/11/archive").status_code == 202

    toloka_emulator.advance_clock(dt.timedelta(days=7, seconds=1).total_seconds())
    assert api.post("/pools/10/archive").status_code == 202  # the window has passed


def test_a_training_waits_for_its_linked_main_pools(toloka_emulator, api):
    toloka_emulator.operation_duration = 0
    toloka_emulator.add_pool("10", project_id="1")
    toloka_emulator.add_pool("11", project_id="1", status="ARCHIVED")
    toloka_emulator.add_training("20", project_id="1", linked_pool_ids=("10", "11"))

    blocked = api.post("/trainings/20/archive")

    assert blocked.status_code == 409
    assert blocked.json()["code"] == "TRAINING_ARCHIVE_CONFLICT"
    assert blocked.json()["payload"] == {"pool_ids": ["10"]}
    assert api.post("/pools/10/archive").status_code == 202
    operation = api.post("/trainings/20/archive").json()
    assert (operation["type"], operation["parameters"]) == ("TRAINING.ARCHIVE", {"training_id": "20"})
    assert toloka_emulator.object("training", "20")["status"] == "ARCHIVED"


def test_an_open_training_is_inappropriate_status(toloka_emulator, api):
    toloka_emulator.add_training("20", project_id="1", status="OPEN")

    response = api.post("/trainings/20/archive")

    assert response.status_code == 409
    assert response.json()["code"] == "INAPPROPRIATE_STATUS"


def test_a_project_needs_every_pool_and_training_archived(toloka_emulator, api):
    toloka_emulator.operation_duration = 0
    toloka_emulator.add_project("1")
    toloka_emulator.add_pool("10", project_id="1")
    toloka_emulator.add_pool("9", project_id="1", status="OPEN")
    toloka_emulator.add_pool("11", project_id="1", status="ARCHIVED")
    toloka_emulator.add_training("20", project_id="1")
    toloka_emulator.add_pool("30", project_id="2")  # another project's pool is no obstacle

    blocked = api.post("/projects/1/archive")

    assert blocked.status_code == 409
    assert blocked.json()["code"] == "UNARCHIVED_POOLS_CONFLICT"
    assert blocked.json()["payload"] == {"pool_ids": ["9", "10"], "training_ids": ["20"]}

    for path in ("/pools/9/close", "/pools/9/archive", "/pools/10/archive", "/trainings/20/archive"):
        assert api.post(path).status_code == 202
    operation = api.post("/projects/1/archive").json()
    assert (operation["type"], operation["status"]) == ("PROJECT.ARCHIVE", "SUCCESS")
    assert operation["parameters"] == {"project_id": "1"}
    assert api.get("/projects/1").json()["status"] == "ARCHIVED"
    assert api.post("/projects/1/archive").status_code == 204


def test_a_second_archive_while_one_runs_is_operation_already_exists(stopped_clock_emulator, stopped_api):
    # The emulator's clock is stopped: the first operation still runs when the second request comes.
    stopped_clock_emulator.add_pool("10", project_id="1")
    first = stopped_api.post("/pools/10/archive").json()

    second = stopped_api.post("/pools/10/archive")

    assert second.status_code == 409
    assert second.json()["code"] == "OPERATION_ALREADY_EXISTS"
    assert second.json()["payload"] == {"operation_id": first["id"]}
    assert len(stopped_clock_emulator.operations()) == 1


def test_a_project_archive_while_one_runs_is_operation_already_exists(stopped_clock_emulator, stopped_api):
    # The emulator's clock is stopped: the first operation still runs when the second request comes.
    stopped_clock_emulator.add_project("1")
    first = stopped_api.post("/projects/1/archive").json()

    second = stopped_api.post("/projects/1/archive")

    assert second.json()["payload"] == {"operation_id": first["id"]}


def test_archiving_while_a_close_runs_is_operation_already_exists(stopped_clock_emulator, stopped_api):
    # The emulator's clock is stopped: the first operation still runs when the second request comes.
    stopped_clock_emulator.add_pool("10", project_id="1", status="OPEN")
    close = stopped_api.post("/pools/10/close").json()

    archive = stopped_api.post("/pools/10/archive")

    assert archive.status_code == 409
    assert archive.json()["payload"] == {"operation_id": close["id"]}


@pytest.mark.parametrize(("kind", "op_type"), [("pools", "POOL.CLOSE"), ("trainings", "TRAINING.CLOSE")])
def test_closing_an_open_object_makes_it_closed(toloka_emulator, api, kind, op_type):
    toloka_emulator.add_pool("10", project_id="1", status="OPEN")
    toloka_emulator.add_training("10", project_id="1", status="OPEN")

    submitted = api.post(f"/{kind}/10/close")

    assert submitted.status_code == 202
    assert submitted.json()["type"] == op_type
    assert api.wait(submitted.json()["id"])["status"] == "SUCCESS"
    closed = api.get(f"/{kind}/10").json()
    assert (closed["status"], closed["last_close_reason"]) == ("CLOSED", "MANUAL")
    assert api.post(f"/{kind}/10/close").status_code == 204


@pytest.mark.parametrize("status", ["ARCHIVED", "LOCKED"])
def test_closing_an_archived_or_locked_pool_is_inappropriate_status(toloka_emulator, api, status):
    toloka_emulator.add_pool("10", project_id="1", status=status)

    response = api.post("/pools/10/close")

    assert response.status_code == 409
    assert response.json()["code"] == "INAPPROPRIATE_STATUS"
    assert response.json()["payload"]["status"] == status


def test_fail_next_ends_the_archive_in_fail_with_details_and_a_log_entry(toloka_emulator, api):
    toloka_emulator.add_pool("10", project_id="1")
    toloka_emulator.fail_next("pool", "10", details={"reason": "storage unavailable"})

    failed = api.wait(api.post("/pools/10/archive").json()["id"])

    assert failed["status"] == "FAIL"
    assert failed["details"] == {"reason": "storage unavailable"}
    assert failed["finished"] is not None
    assert api.get("/pools/10").json()["status"] == "CLOSED"
    log = api.get(f"/operations/{failed['id']}/log").json()
    assert len(log) == 1
    assert log == [
        {
            "type": "POOL_VALIDATE",
            "success": False,
            "input": {"pool_id": "10"},
            "output": {"reason": "storage unavailable"},
        }
    ]

    retried = api.wait(api.post("/pools/10/archive").json()["id"])  # only the next one fails
    assert retried["status"] == "SUCCESS"
    assert api.get(f"/operations/{retried['id']}/log").json() == []


def test_unknown_and_malformed_operation_ids(api):
    missing = api.get("/operations/95029e60-eace-4a3e-96b9-c72c5e727218")
    malformed = api.get("/operations/not%20an%20id")

    assert (missing.status_code, missing.json()["code"]) == (404, "DOES_NOT_EXIST")
    assert (malformed.status_code, malformed.json()["code"]) == (400, "VALIDATION_ERROR")


@pytest.mark.parametrize("path", ["/pools/abc/archive", "/trainings/1x/close", "/projects/-1/archive"])
def test_malformed_object_ids_are_validation_errors(api, path):
    response = api.post(path)

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


def test_airflow_connection_json_points_at_the_emulator(toloka_emulator):
    conn = json.loads(toloka_emulator.airflow_conn_json(auth_scheme="ApiKey"))

    assert conn == {
        "conn_type": "toloka",
        "host": toloka_emulator.url,
        "password": "test-token",
        "extra": {"auth_scheme": "ApiKey"},
    }
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", toloka_emulator.url)


def test_python_api_rejects_what_toloka_would_not_hold(toloka_emulator):
    with pytest.raises(ValueError, match="digits"):
        toloka_emulator.add_pool("pool-a", project_id="1")
    with pytest.raises(ValueError, match="status"):
        toloka_emulator.add_pool("10", project_id="1", status="DONE")
    with pytest.raises(ValueError, match="timezone"):
        toloka_emulator.add_pool("10", project_id="1", last_rejection=dt.datetime(2024, 1, 1))
    with pytest.raises(KeyError, match="Pool 10 does not exist"):
        toloka_emulator.object("pool", "10")
    with pytest.raises(ValueError, match="operation_duration"):
        toloka_emulator.operation_duration = -1
