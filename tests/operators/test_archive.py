"""The archive operators' ``execute`` against the emulator over real HTTP."""

from __future__ import annotations

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaApiError, TolokaOperationFailed, TolokaOperationTimeout
from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    toloka_conn.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=("10",))
    return toloka_conn


def run(operator):
    ti = RecordingTI()
    return operator.execute({"ti": ti}), ti.pushed


def test_pool_training_project_in_order(emu):
    for operator, status_of in [
        (TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.1), ("pool", "10")),
        (TolokaArchiveTrainingOperator(task_id="t", training_id=20, poll_interval=0.1), ("training", "20")),
        (TolokaArchiveProjectOperator(task_id="j", project_id="1", poll_interval=0.1), ("project", "1")),
    ]:
        result, pushed = run(operator)
        assert result["status"] == "SUCCESS"
        assert pushed["operation_id"] == result["id"]
        assert emu.object(*status_of)["status"] == "ARCHIVED"


def test_already_archived_succeeds_with_none(emu):
    emu.add_pool("11", project_id="1", status="ARCHIVED")
    result, pushed = run(TolokaArchivePoolOperator(task_id="p", pool_id="11"))
    assert result is None
    assert "operation_id" not in pushed


def test_without_waiting_returns_the_submitted_operation(emu):
    emu.operation_duration = 5
    result, pushed = run(TolokaArchivePoolOperator(task_id="p", pool_id="10", wait_for_completion=False))
    assert result["status"] in ("PENDING", "RUNNING")
    assert pushed["operation_id"] == result["id"]
    # One archive request, then one read for the web-UI link (the pool's project), and no polling.
    assert [r.method for r in emu.requests] == ["POST", "GET"]


def test_fail_fails_the_task_with_the_details(emu):
    emu.fail_next("pool", "10", details={"reason": "pool is used by a running export"})
    operator = TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.1)
    with pytest.raises(TolokaOperationFailed, match=r"POOL.ARCHIVE.*FAIL.*running export"):
        run(operator)


def test_timeout_fails_the_task(emu):
    emu.operation_duration = 30
    operator = TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.2, timeout=0.5)
    with pytest.raises(TolokaOperationTimeout):
        run(operator)


def test_conflict_fails_the_task_with_the_hint(emu):
    operator = TolokaArchiveProjectOperator(task_id="j", project_id="1")
    with pytest.raises(TolokaApiError, match="UNARCHIVED_POOLS_CONFLICT.*archive every pool"):
        run(operator)


def test_a_rendered_id_that_escapes_the_path_is_refused_before_any_request(emu):
    operator = TolokaArchivePoolOperator(task_id="p", pool_id="5/../../projects/7")
    with pytest.raises(ValueError, match=r"pool_id='5/../../projects/7' is not a valid Toloka id"):
        run(operator)
    assert emu.requests == []


@pytest.mark.parametrize("kwargs", [{"poll_interval": 0}, {"poll_interval": -1}, {"timeout": float("nan")}])
def test_bad_waiting_arguments_fail_at_parse_time(kwargs):
    with pytest.raises(ValueError, match=rf"{next(iter(kwargs))}="):
        TolokaArchivePoolOperator(task_id="p", pool_id="1", **kwargs)


@pytest.mark.parametrize(
    ("operator_cls", "field", "object_id", "path"),
    [
        (TolokaArchivePoolOperator, "pool_id", "10", "/api/v1/pools/10/archive"),
        (TolokaArchiveTrainingOperator, "training_id", "21", "/api/v1/trainings/21/archive"),
        (TolokaArchiveProjectOperator, "project_id", "2", "/api/v1/projects/2/archive"),
    ],
)
def test_the_id_and_the_connection_are_rendered_from_templates(
    emu, monkeypatch, operator_cls, field, object_id, path
):
    from airflow.sdk import DAG

    emu.add_training("21", project_id="1", status="CLOSED")
    emu.add_project("2")
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_OTHER", emu.airflow_conn_json())
    monkeypatch.delenv("AIRFLOW_CONN_TOLOKA_DEFAULT")
    params = {"object_id": object_id, "account": "other"}
    with DAG("templated", schedule=None, params=params):
        operator = operator_cls(
            task_id="archive",
            toloka_conn_id="toloka_{{ params.account }}",
            wait_for_completion=False,
            **{field: "{{ params.object_id }}"},
        )
    context = {"params": params, "ti": RecordingTI()}

    operator.render_template_fields(context)  # what Airflow does before execute
    operator.execute(context)

    assert [r.path for r in emu.requests if r.method == "POST"] == [path]
    assert operator.hook.toloka_conn_id == "toloka_other"


def test_a_retried_task_waits_on_its_running_archive_on_every_airflow(emu):
    """Below Airflow 3.3 ``ResumableJobMixin`` is common-compat's stand-in, which keeps no operation id
    between tries: the retry asks Toloka again, and the hook finds the archive already running."""
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

    emu.operation_duration = 2
    # The first try: Toloka accepted the archive, then the worker died.
    first, _ = run(TolokaArchivePoolOperator(task_id="p", pool_id="10", wait_for_completion=False))

    retry = TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.05)
    result, pushed = run(retry)

    assert retry.durable is AIRFLOW_V_3_3_PLUS  # the stand-in below 3.3, the real mixin from 3.3
    assert result["id"] == first["id"] == pushed["operation_id"]
    assert result["status"] == "SUCCESS"
    assert len(emu.operations(type="POOL.ARCHIVE")) == 1
