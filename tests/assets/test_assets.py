"""The ``toloka`` asset scheme and the asset events every archive records.

The normalizer is exercised through ``Asset(...)`` itself: Airflow finds it through the provider's
``asset-uris``, so a test that passes here also proves the registration. Events are read from a real
``OutletEventAccessors``, the object Airflow's task runner hands the operators as ``outlet_events``.
"""

from __future__ import annotations

import pendulum
import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors
from task_instance_stub import RecordingTI

from airflow_provider_toloka.assets import TOLOKA_ARCHIVE_ALIAS, toloka_asset_uri
from airflow_provider_toloka.housekeeping import run as housekeeping_run
from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
)
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("toloka://toloka.dev/projects/1003", "toloka://toloka.dev/projects/1003"),
        ("TOLOKA://Sandbox.Toloka.DEV:443/pools/7/", "toloka://sandbox.toloka.dev/pools/7"),
        ("toloka://127.0.0.1:8765/trainings/20", "toloka://127.0.0.1:8765/trainings/20"),
        ("toloka://toloka.dev:80/projects/1#x", "toloka://toloka.dev/projects/1"),
    ],
)
def test_good_uris_normalise(given, normal):
    assert Asset(given).uri == normal


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("toloka://toloka.dev/tasks/1", "the kind 'tasks'"),
        ("toloka://toloka.dev/projects/", "the id is empty"),
        ("toloka://toloka.dev/projects", "the id is empty"),
        ("toloka://toloka.dev/projects/12a", "'12a' is not a number"),
        ("toloka://toloka.dev/projects/1/pools", "extra path segments"),
        ("toloka:///projects/1", "no host"),
        ("toloka://toloka.dev/projects/1?x=1", "query"),
    ],
)
def test_bad_uris_are_refused_naming_the_shape(uri, why):
    with pytest.raises(ValueError, match="Expected toloka://<api host>/") as error:
        Asset(uri)
    assert why in str(error.value)


def test_uri_from_a_connection(toloka_conn, monkeypatch):
    host = toloka_conn.url.split("://", 1)[1].split("/")[0]
    assert toloka_asset_uri("project", 1003) == f"toloka://{host}/projects/1003"
    monkeypatch.setenv(
        "AIRFLOW_CONN_TOLOKA_SANDBOX", '{"conn_type": "toloka", "extra": {"environment": "sandbox"}}'
    )
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_PROD", '{"conn_type": "toloka"}')
    assert (
        toloka_asset_uri("pool", "7", toloka_conn_id="toloka_sandbox")
        == "toloka://sandbox.toloka.dev/pools/7"
    )
    assert toloka_asset_uri("training", 2, toloka_conn_id="toloka_prod") == "toloka://toloka.dev/trainings/2"
    with pytest.raises(ValueError, match="kind='task' is not valid"):
        toloka_asset_uri("task", 1)


def run(operator):
    events = OutletEventAccessors()
    operator.execute({"ti": RecordingTI(), "outlet_events": events})
    alias_events = events[AssetAlias(TOLOKA_ARCHIVE_ALIAS)].asset_alias_events
    return {(e.dest_asset_key.uri, e.source_alias_name): e.extra for e in alias_events}


def uri(emu, kind, object_id):
    host = emu.url.split("://", 1)[1].split("/")[0]
    return f"toloka://{host}/{kind}s/{object_id}"


def test_operators_list_the_alias_among_their_outlets():
    pool = TolokaArchivePoolOperator(task_id="p", pool_id="1", outlets=[Asset("toloka://toloka.dev/pools/1")])
    assert AssetAlias(TOLOKA_ARCHIVE_ALIAS) in pool.outlets
    assert Asset("toloka://toloka.dev/pools/1") in pool.outlets
    assert AssetAlias(TOLOKA_ARCHIVE_ALIAS) in TolokaHousekeepingOperator(task_id="h").outlets


def test_pool_archive_and_already_archived_record_events(toloka_conn):
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    before = pendulum.now("UTC")
    events = run(TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.1))
    [(key, extra)] = events.items()
    assert key == (uri(toloka_conn, "pool", "10"), TOLOKA_ARCHIVE_ALIAS)
    assert extra["kind"] == "pool"
    assert extra["id"] == "10"
    assert extra["operation_id"]
    assert extra["environment"] == uri(toloka_conn, "pool", "10").split("/")[2]
    assert pendulum.parse(extra["archived_at"]) >= before
    again = run(TolokaArchivePoolOperator(task_id="p", pool_id="10", poll_interval=0.1))  # 204
    assert [extra["operation_id"] for extra in again.values()] == [None]


def test_failed_archive_records_nothing(toloka_conn):
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="OPEN")
    events = OutletEventAccessors()
    with pytest.raises(Exception, match="10"):
        TolokaArchivePoolOperator(task_id="p", pool_id="10").execute(
            {"ti": RecordingTI(), "outlet_events": events}
        )
    assert events[AssetAlias(TOLOKA_ARCHIVE_ALIAS)].asset_alias_events == []


def test_cascade_records_every_object_and_dry_run_none(toloka_conn):
    toloka_conn.add_project("1")
    toloka_conn.add_pool("10", project_id="1", status="CLOSED")
    toloka_conn.add_pool("11", project_id="1", status="ARCHIVED")
    toloka_conn.add_training("20", project_id="1", status="CLOSED", linked_pool_ids=("10",))
    kwargs = {"task_id": "c", "project_id": "1", "cascade": True, "poll_interval": 0.1}
    assert run(TolokaArchiveProjectOperator(dry_run=True, **kwargs)) == {}
    events = run(TolokaArchiveProjectOperator(**kwargs))
    by_uri = {key[0]: extra for key, extra in events.items()}
    assert set(by_uri) == {
        uri(toloka_conn, "pool", "10"),
        uri(toloka_conn, "pool", "11"),
        uri(toloka_conn, "training", "20"),
        uri(toloka_conn, "project", "1"),
    }
    assert by_uri[uri(toloka_conn, "pool", "11")]["operation_id"] is None  # already archived
    assert by_uri[uri(toloka_conn, "pool", "10")]["operation_id"]
    assert by_uri[uri(toloka_conn, "project", "1")]["operation_id"]


def test_housekeeping_records_archived_objects_of_approved_projects(toloka_conn, monkeypatch):
    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(toloka_conn.now))
    toloka_conn.operation_duration = 0.1
    for project_id in ("1", "2", "3"):
        toloka_conn.add_project(project_id)
        toloka_conn.add_pool(f"{project_id}0", project_id, status="CLOSED")
    toloka_conn.advance_clock(40 * 86400)
    kwargs = {"task_id": "h", "min_idle_days": 30, "poll_interval": 0.1}
    assert run(TolokaHousekeepingOperator(dry_run=True, **kwargs)) == {}
    events = run(TolokaHousekeepingOperator(project_ids=["1", "3"], **kwargs))
    assert {key[0] for key in events} == {
        uri(toloka_conn, kind, object_id)
        for kind, object_id in (("project", "1"), ("pool", "10"), ("project", "3"), ("pool", "30"))
    }
    assert toloka_conn.object("project", "2")["status"] == "ACTIVE"
    capped = run(TolokaHousekeepingOperator(max_projects=1, **kwargs))
    assert {key[0] for key in capped} == {uri(toloka_conn, "project", "2"), uri(toloka_conn, "pool", "20")}
