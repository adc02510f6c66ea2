"""Task buttons in the Airflow UI: each task stores the Toloka web page it worked on."""

from __future__ import annotations

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.links import (
    TolokaOperationLink,
    TolokaPoolLink,
    TolokaProjectLink,
    TolokaTrainingLink,
)
from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor


@pytest.fixture
def emu(toloka_conn, monkeypatch):
    conn = toloka_conn.airflow_conn_json().replace(
        '"extra": {', '"extra": {"ui_base_url": "https://ui.example/",'
    )
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", conn)
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    toloka_conn.add_training("20", project_id="1", status="CLOSED")
    return toloka_conn


@pytest.mark.parametrize(
    ("operator", "link", "url"),
    [
        (
            TolokaArchiveProjectOperator(task_id="j", project_id="1"),
            TolokaProjectLink,
            "/requester/project/1",
        ),
        (
            TolokaArchivePoolOperator(task_id="p", pool_id="10"),
            TolokaPoolLink,
            "/requester/project/1/pool/10",
        ),
        (
            TolokaArchiveTrainingOperator(task_id="t", training_id="20"),
            TolokaTrainingLink,
            "/requester/project/1/training/20",
        ),
    ],
)
def test_archive_task_links_to_the_object_page(emu, operator, link, url):
    if operator.object_kind == "project":
        emu.add_pool("10", project_id="1", status="ARCHIVED")
        emu.add_training("20", project_id="1", status="ARCHIVED")
    ti = RecordingTI()
    operator.execute({"ti": ti})
    assert ti.pushed[link.key] == "https://ui.example" + url
    assert [type(x) for x in operator.operator_extra_links] == [link]


def test_the_link_is_there_even_when_toloka_refuses_the_archive(emu):
    emu.add_pool("11", project_id="1", status="OPEN")
    ti = RecordingTI()
    with pytest.raises(Exception, match="INAPPROPRIATE_STATUS|close"):
        TolokaArchivePoolOperator(task_id="p", pool_id="11").execute({"ti": ti})
    assert ti.pushed == {TolokaPoolLink.key: "https://ui.example/requester/project/1/pool/11"}


def test_an_unknown_object_gets_no_link_and_the_archive_error_explains(emu):
    ti = RecordingTI()
    with pytest.raises(Exception, match="404"):
        TolokaArchivePoolOperator(task_id="p", pool_id="404404").execute({"ti": ti})
    assert ti.pushed == {}


def test_sensor_links_to_the_object_of_the_operation(emu):
    emu.operation_duration = 0.05
    operation = TolokaArchivePoolOperator(task_id="p", pool_id="10", wait_for_completion=False).execute(
        {"ti": RecordingTI()}
    )
    ti = RecordingTI()
    sensor = TolokaOperationSensor(task_id="w", operation_id=operation["id"], poke_interval=0.05, timeout=10)
    sensor.execute({"ti": ti})
    assert ti.pushed[TolokaOperationLink.key] == "https://ui.example/requester/project/1/pool/10"


def test_the_api_server_finds_each_link_under_the_key_the_task_pushes():
    """Airflow 3's api-server draws a button from XCom under the serialized link's ``xcom_key``."""
    try:
        from airflow.serialization.serialized_objects import OperatorSerialization
    except ImportError:  # Airflow 3.0 and 3.1: the same methods on SerializedBaseOperator
        from airflow.serialization.serialized_objects import SerializedBaseOperator as OperatorSerialization

    for operator, link in [
        (TolokaArchivePoolOperator(task_id="p", pool_id="10"), TolokaPoolLink),
        (TolokaOperationSensor(task_id="w", operation_id="x"), TolokaOperationLink),
    ]:
        serialized = OperatorSerialization.serialize_operator(operator)
        restored = OperatorSerialization.deserialize_operator(serialized)
        assert {name: x.xcom_key for name, x in restored.operator_extra_link_dict.items()} == {
            link.name: link.key
        }
