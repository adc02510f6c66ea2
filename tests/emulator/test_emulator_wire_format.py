"""Each answer of the emulator against Toloka's documented example bodies (``fixtures/toloka_shapes.json``).

The fixture holds the example responses of Toloka's archive pages and API reference, and the field names
of toloka-kit 1.2.3's models, the one independent client. An answer must have the documented keys with
values of the documented JSON types, and no key Toloka does not have (no inner state such as rejection
dates or the training's pool list).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

SHAPES = json.loads((Path(__file__).parent / "fixtures" / "toloka_shapes.json").read_text())
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def json_type(value: Any) -> str:
    return type(value).__name__


def assert_like(answer: dict[str, Any], example: dict[str, Any]) -> None:
    """Every key of the documented example, with a value of the same JSON type (``null`` where unset)."""
    for key, value in example.items():
        assert key in answer, f"{key} missing from {answer}"
        if answer[key] is not None:
            assert json_type(answer[key]) == json_type(value), (key, answer[key], value)


@pytest.fixture
def world(toloka_emulator):
    toloka_emulator.operation_duration = 0
    toloka_emulator.add_project("1")
    toloka_emulator.add_pool("10", project_id="1")
    toloka_emulator.add_pool("11", project_id="1", last_rejection=toloka_emulator.now - dt.timedelta(days=1))
    toloka_emulator.add_training("20", project_id="1", linked_pool_ids=["10"])
    return toloka_emulator


@pytest.mark.parametrize(
    ("op_type", "path"), [("POOL.ARCHIVE", "/pools/10"), ("TRAINING.ARCHIVE", "/trainings/20")]
)
def test_an_operation_looks_like_the_documented_example(world, api, op_type, path):
    if op_type == "TRAINING.ARCHIVE":
        api.post("/pools/10/archive")
    operation = api.post(f"{path}/archive").json()

    example = SHAPES["operations"][op_type]
    assert_like(operation, example)
    assert operation["type"] == op_type
    assert set(operation["parameters"]) == set(example["parameters"])
    for key in ("submitted", "started", "finished"):
        dt.datetime.strptime(operation[key], TIME_FORMAT)  # UTC, no offset, milliseconds


@pytest.mark.parametrize(
    ("kind", "path"), [("project", "/projects/1"), ("pool", "/pools/11"), ("training", "/trainings/20")]
)
def test_objects_hold_only_fields_toloka_has(world, api, kind, path):
    answer = api.get(path).json()

    assert set(answer) <= set(SHAPES["fields"][kind]), set(answer) - set(SHAPES["fields"][kind])
    assert "created" in answer
    if kind != "project":
        assert {"last_started", "last_stopped"} <= set(answer)


def test_the_training_link_is_on_the_main_pool_where_toloka_puts_it(world, api):
    requirement = api.get("/pools/10").json()["quality_control"]["training_requirement"]

    assert set(requirement) == set(SHAPES["fields"]["training_requirement"])
    assert requirement["training_pool_id"] == "20"
    assert "quality_control" not in api.get("/pools/11").json()
    assert api.get("/pools/10").json()["type"] == "REGULAR"


def test_a_conflict_looks_like_the_documented_error_body(world, api):
    api.post("/pools/10/archive")  # zero duration: archived at once

    body = api.post("/projects/1/archive").json()

    assert_like(body, SHAPES["error_409"])
    assert body["code"] == "UNARCHIVED_POOLS_CONFLICT"


def test_a_rejection_window_refusal_carries_no_inner_dates(world, api):
    body = api.post("/pools/11/archive").json()

    assert set(body) <= set(SHAPES["error_409"])
    assert body["code"] == "THERE_IS_REJECTED_ASSIGNMENT"
    assert "payload" not in body


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/pools", {"limit": "301"}, "limit"),
        ("/pools/pool-a", {}, "pool_id"),
        ("/operations", {"status": "x"}, "status"),
    ],
)
def test_a_validation_error_names_each_field_with_code_and_message(world, api, path, params, field):
    response = api.get(path, **params)

    assert response.status_code == 400
    body = response.json()
    assert_like(body, SHAPES["validation_error"])
    assert list(body["payload"]) == [field]  # toloka-kit's ValidationApiError.invalid_fields
    assert set(body["payload"][field]) == set(SHAPES["validation_error"]["payload"]["limit"])


def test_an_injected_400_also_has_a_validation_payload(world, api):
    world.inject_fault("400")

    body = api.get("/pools/10").json()

    assert_like(body, SHAPES["validation_error"])


def test_a_failed_operations_log_item_has_toloka_kits_fields(world, api):
    world.fail_next("pool", "10", details={"reason": "storage unavailable"})
    operation = api.post("/pools/10/archive").json()

    (item,) = api.get(f"/operations/{operation['id']}/log").json()

    example = SHAPES["operation_log_item"]
    assert set(item) == set(example)
    assert_like(item, example)
    assert item["type"] != operation["type"]  # the kind of log item, not the operation's type


@pytest.mark.parametrize("op_type", SHAPES["operation_types"])
def test_every_toloka_operation_type_can_be_listed(world, api, op_type):
    api.post("/pools/10/archive")

    response = api.get("/operations", type=op_type)

    assert response.status_code == 200
    items = response.json()["items"]
    assert {op["type"] for op in items} <= {op_type}
    assert bool(items) == (op_type == "POOL.ARCHIVE")
