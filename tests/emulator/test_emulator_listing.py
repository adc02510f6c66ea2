"""Reading objects and paging through lists, as a client archiving a whole project would."""

from __future__ import annotations

import datetime as dt

import pytest


def test_paging_by_id_walks_700_pools_in_numeric_order(toloka_emulator, api):
    for number in range(1, 701):
        toloka_emulator.add_pool(str(number), project_id="1")
    toloka_emulator.add_pool("5000", project_id="2")

    seen, has_more_flags, id_gt = [], [], None
    while True:
        params = {"project_id": "1", "sort": "id", "limit": 300}
        if id_gt is not None:
            params["id_gt"] = id_gt
        page = api.get("/pools", **params).json()
        seen += [pool["id"] for pool in page["items"]]
        has_more_flags.append(page["has_more"])
        if not page["has_more"]:
            break
        id_gt = page["items"][-1]["id"]

    assert seen == [str(number) for number in range(1, 701)]
    assert has_more_flags == [True, True, False]


def test_lists_default_to_50_items(toloka_emulator, api):
    for number in range(60):
        toloka_emulator.add_training(str(number), project_id="1")

    page = api.get("/trainings").json()

    assert len(page["items"]) == 50
    assert page["has_more"] is True


def test_lists_filter_by_project_and_status(toloka_emulator, api):
    toloka_emulator.add_pool("1", project_id="1", status="OPEN")
    toloka_emulator.add_pool("2", project_id="1", status="CLOSED")
    toloka_emulator.add_pool("3", project_id="2", status="OPEN")

    open_in_1 = api.get("/pools", project_id="1", status="OPEN").json()

    assert [pool["id"] for pool in open_in_1["items"]] == ["1"]
    assert open_in_1["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "301"},
        {"limit": "ten"},
        {"status": "DONE"},
        {"project_id": "abc"},
        {"id_gt": "x"},
        {"sort": "-id"},
    ],
)
def test_bad_list_parameters_are_validation_errors(api, params):
    response = api.get("/pools", **params)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert next(iter(params)) in body["message"]


def test_objects_read_back_as_toloka_shows_them(toloka_emulator, api):
    made = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    toloka_emulator.add_project("1", public_name="Cats", created=made)
    toloka_emulator.add_pool("10", project_id="1", private_name="Week 1", created=made)
    toloka_emulator.add_training("20", project_id="1", linked_pool_ids=("10",))

    project = api.get("/projects/1").json()
    pool = api.get("/pools/10").json()
    training = api.get("/trainings/20").json()

    assert project == {
        "id": "1",
        "status": "ACTIVE",
        "public_name": "Cats",
        "created": "2026-01-02T03:04:05.000",
    }
    assert pool == {
        "id": "10",
        "project_id": "1",
        "type": "REGULAR",
        "status": "CLOSED",
        "private_name": "Week 1",
        "last_close_reason": "MANUAL",
        "created": "2026-01-02T03:04:05.000",
        "last_started": "2026-01-02T03:04:05.000",
        "last_stopped": "2026-01-02T03:04:05.000",
        "quality_control": {
            "training_requirement": {"training_pool_id": "20", "training_passing_skill_value": 80}
        },
    }
    assert "main_pool_ids" not in training  # the link is on the pool, as in Toloka
    assert (training["id"], training["project_id"], training["status"]) == ("20", "1", "CLOSED")
    assert toloka_emulator.object("training", "20") == training


def test_a_moved_clock_finishes_operations_and_stamps_the_close(toloka_emulator, api):
    toloka_emulator.operation_duration = 3600
    toloka_emulator.add_pool("10", project_id="1", status="OPEN")
    assert "last_stopped" not in api.get("/pools/10").json()
    before = toloka_emulator.now

    operation = api.post("/pools/10/close").json()
    toloka_emulator.advance_clock(2 * 86400)

    assert api.get(f"/operations/{operation['id']}").json()["status"] == "SUCCESS"
    pool = api.get("/pools/10").json()
    assert pool["status"] == "CLOSED"
    stopped = dt.datetime.fromisoformat(pool["last_stopped"]).replace(tzinfo=dt.UTC)
    # Toloka's times carry milliseconds: the close, submitted after ``before``, may show up to 1 ms earlier.
    assert stopped - before.replace(microsecond=before.microsecond // 1000 * 1000) >= dt.timedelta(
        seconds=3600
    )
    assert toloka_emulator.now - before >= dt.timedelta(days=2)


def test_the_clock_only_moves_forward(toloka_emulator):
    with pytest.raises(ValueError, match="only moves forward"):
        toloka_emulator.advance_clock(-1)


def test_reading_an_unknown_object_is_404(api):
    response = api.get("/trainings/404")

    assert response.status_code == 404
    assert response.json()["code"] == "DOES_NOT_EXIST"


def test_operations_list_filters_sorts_and_pages(toloka_emulator, api):
    toloka_emulator.operation_duration = 0
    for number in range(1, 6):
        toloka_emulator.add_pool(str(number), project_id="1", status="OPEN")
        api.post(f"/pools/{number}/close")
        api.post(f"/pools/{number}/archive")
    toloka_emulator.operation_duration = 30
    toloka_emulator.add_pool("6", project_id="1")
    running = api.post("/pools/6/archive").json()

    archives = api.get("/operations", type="POOL.ARCHIVE").json()
    closes = api.get("/operations", type="POOL.CLOSE", status="SUCCESS").json()
    unfinished = api.get("/operations", status="PENDING").json()
    newest_first = api.get("/operations", type="POOL.ARCHIVE", sort="-submitted", limit=2).json()
    by_id = api.get("/operations", sort="id", limit=4).json()
    after = api.get("/operations", sort="id", id_gt=by_id["items"][-1]["id"]).json()

    assert len(archives["items"]) == 6
    assert [op["parameters"]["pool_id"] for op in closes["items"]] == ["1", "2", "3", "4", "5"]
    assert [op["id"] for op in unfinished["items"]] == [running["id"]]
    assert [op["parameters"]["pool_id"] for op in newest_first["items"]] == ["6", "5"]
    assert newest_first["has_more"] is True
    all_ids = sorted(op["id"] for op in toloka_emulator.operations())
    assert [op["id"] for op in by_id["items"] + after["items"]] == all_ids
    assert (by_id["has_more"], after["has_more"]) == (True, False)
    assert len(toloka_emulator.operations(type="POOL.CLOSE")) == 5


@pytest.mark.parametrize("params", [{"type": "POOL.DELETE"}, {"status": "DONE"}, {"sort": "finished"}])
def test_bad_operation_filters_are_validation_errors(api, params):
    response = api.get("/operations", **params)

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


def test_unknown_endpoints_answer_in_tolokas_error_shape(api):
    response = api.get("/pools/1/delete")

    assert response.status_code == 404
    assert response.json()["code"] == "DOES_NOT_EXIST"
    assert response.json()["request_id"] == response.headers["X-Request-Id"]


def test_projects_list_pages_by_id_and_filters_by_status(toloka_emulator, api):
    for number in range(1, 8):
        toloka_emulator.add_project(str(number), status="ARCHIVED" if number % 3 == 0 else "ACTIVE")

    first = api.get("/projects", status="ACTIVE", sort="id", limit=3).json()
    rest = api.get("/projects", status="ACTIVE", sort="id", limit=3, id_gt=first["items"][-1]["id"]).json()

    assert [p["id"] for p in first["items"]] == ["1", "2", "4"]
    assert first["has_more"] is True
    assert [p["id"] for p in rest["items"]] == ["5", "7"]
    assert rest["has_more"] is False
    archived = api.get("/projects", status="ARCHIVED").json()["items"]
    assert [(p["id"], p["status"]) for p in archived] == [("3", "ARCHIVED"), ("6", "ARCHIVED")]
    assert api.get("/projects", status="CLOSED").json()["code"] == "VALIDATION_ERROR"
