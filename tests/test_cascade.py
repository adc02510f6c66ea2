"""``TolokaArchiveProjectOperator(cascade=True)`` against the emulator over real HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import TolokaCascadeBlocked, TolokaCascadeFailed
from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

POOLS = [str(100 + i) for i in range(40)]
# Each training is linked to a slice of the pools; the last one to none.
TRAININGS = {"900": POOLS[:10], "901": POOLS[10:25], "902": []}


@pytest.fixture
def emu(toloka_conn):
    toloka_conn.operation_duration = 0.1
    toloka_conn.add_project("7")
    for pool_id in POOLS:
        toloka_conn.add_pool(pool_id, project_id="7")
    for training_id, linked in TRAININGS.items():
        toloka_conn.add_training(training_id, project_id="7", linked_pool_ids=linked)
    return toloka_conn


def cascade(**kwargs):
    operator = TolokaArchiveProjectOperator(
        task_id="archive", project_id="7", cascade=True, poll_interval=0.2, **kwargs
    )
    ti = RecordingTI()
    return operator.execute({"ti": ti}), ti.pushed


def posts(emu, action="archive"):
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith(f"/{action}")]


def statuses(emu, kind, ids):
    return {emu.object(kind, object_id)["status"] for object_id in ids}


def test_archives_everything_once_pools_before_trainings_project_last(emu):
    summary, pushed = cascade(max_concurrency=8)

    assert statuses(emu, "pool", POOLS) == {"ARCHIVED"}
    assert statuses(emu, "training", TRAININGS) == {"ARCHIVED"}
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    archive_posts = [r.path.split("/api/v1/")[1] for r in posts(emu)]
    assert sorted(archive_posts) == sorted(
        [f"pools/{p}/archive" for p in POOLS]
        + [f"trainings/{t}/archive" for t in TRAININGS]
        + ["projects/7/archive"]
    )
    pool_ops = {op["parameters"]["pool_id"]: op for op in emu.operations("POOL.ARCHIVE")}
    for op in emu.operations("TRAINING.ARCHIVE"):
        linked = TRAININGS[op["parameters"]["training_id"]]
        assert all(pool_ops[p]["finished"] <= op["submitted"] for p in linked)
    assert archive_posts[-1] == "projects/7/archive"
    assert sorted(summary["pools"]["archived"]) == sorted(POOLS)
    assert sorted(summary["trainings"]["archived"]) == sorted(TRAININGS)
    assert summary["project"]["operation"]["status"] == "SUCCESS"
    assert pushed == {"operation_id": summary["project"]["operation"]["id"]}


def test_archived_objects_are_skipped(emu):
    emu.add_pool("100", project_id="7", status="ARCHIVED")
    emu.add_training("902", project_id="7", status="ARCHIVED")

    summary, _ = cascade()

    assert "100" in summary["pools"]["skipped"]
    assert "100" not in summary["pools"]["archived"]
    assert summary["trainings"]["skipped"] == ["902"]
    assert not any(r.path.endswith("/pools/100/archive") for r in posts(emu))


def test_open_and_locked_objects_stop_it_before_any_change(emu):
    emu.add_pool("105", project_id="7", status="OPEN")
    emu.add_pool("130", project_id="7", status="OPEN")
    emu.add_pool("131", project_id="7", status="LOCKED")
    emu.add_training("901", project_id="7", status="OPEN", linked_pool_ids=TRAININGS["901"])

    with pytest.raises(TolokaCascadeBlocked) as caught:
        cascade()

    message = str(caught.value)
    for line in ("pool 105 (OPEN)", "pool 130 (OPEN)", "pool 131 (LOCKED)", "training 901 (OPEN)"):
        assert line in message
    assert "close_open=True" in message
    assert posts(emu) == []
    assert posts(emu, "close") == []


def test_close_open_closes_first_then_archives(emu):
    emu.add_pool("105", project_id="7", status="OPEN")
    emu.add_training("902", project_id="7", status="OPEN")

    summary, _ = cascade(close_open=True)

    assert summary["pools"]["closed"] == ["105"]
    assert summary["trainings"]["closed"] == ["902"]
    assert "105" in summary["pools"]["archived"]
    assert emu.object("pool", "105")["status"] == "ARCHIVED"
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    close = emu.operations("POOL.CLOSE")[0]
    archive = next(op for op in emu.operations("POOL.ARCHIVE") if op["parameters"]["pool_id"] == "105")
    assert close["finished"] <= archive["submitted"]


def test_locked_pool_is_not_closed_even_with_close_open(emu):
    emu.add_pool("131", project_id="7", status="LOCKED")

    with pytest.raises(TolokaCascadeBlocked, match=r"pool 131 \(LOCKED\)"):
        cascade(close_open=True)
    assert posts(emu, "close") == []


def test_pool_in_rejection_window_is_reported_with_the_date_it_becomes_archivable(emu):
    rejected = dt.datetime(2030, 1, 2, 15, 30, tzinfo=dt.timezone.utc)
    emu.add_pool("110", project_id="7", last_rejection=rejected)

    with pytest.raises(TolokaCascadeBlocked) as caught:
        cascade()

    assert "pool 110 (CLOSED)" in str(caught.value)
    assert "archived from 2030-01-11 15:30 UTC" in str(caught.value)
    assert posts(emu) == []


def test_dry_run_returns_the_plan_and_sends_no_post(emu):
    emu.add_pool("105", project_id="7", status="OPEN")
    emu.add_pool("100", project_id="7", status="ARCHIVED")

    result, _ = cascade(dry_run=True, close_open=True)

    assert [r.method for r in emu.requests]
    assert {r.method for r in emu.requests} == {"GET"}
    plan = result["plan"]
    assert plan["close"] == {"pools": ["105"], "trainings": []}
    assert plan["archive"]["pools"] == POOLS[1:]
    assert plan["archive"]["trainings"] == list(TRAININGS)
    assert plan["archive"]["project"] == ["7"]
    assert plan["skip"]["pools"] == ["100"]
    assert emu.object("pool", "101")["status"] == "CLOSED"


def test_a_failed_pool_stops_it_and_a_retry_continues(emu):
    emu.fail_next("pool", "120", details={"reason": "injected"})

    with pytest.raises(TolokaCascadeFailed) as caught:
        cascade(max_concurrency=4)

    message, summary = str(caught.value), caught.value.summary
    assert "could not archive pool 120" in message
    assert "injected" in message
    assert "120" in summary["not_archived"]["pools"]
    assert summary["not_archived"]["trainings"] == list(TRAININGS)
    assert set(summary["pools"]["archived"]) | set(summary["not_archived"]["pools"]) == set(POOLS)
    assert statuses(emu, "pool", summary["pools"]["archived"]) == {"ARCHIVED"}
    assert statuses(emu, "training", TRAININGS) == {"CLOSED"}
    assert emu.object("project", "7")["status"] == "ACTIVE"
    assert not any("/trainings/" in r.path or "/projects/" in r.path for r in posts(emu))

    summary_after_retry, _ = cascade()

    assert sorted(summary_after_retry["pools"]["skipped"]) == sorted(summary["pools"]["archived"])
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    pool_archives = [op["parameters"]["pool_id"] for op in emu.operations("POOL.ARCHIVE")]
    assert sorted(pool_archives) == sorted([*POOLS, "120"])  # only the failed pool twice


def test_429_storm_under_a_rate_limit_is_ridden_out(emu):
    emu.rate_limit = 30
    emu.inject_fault("429", count=10, path="/archive", retry_after=0.2)

    summary, _ = cascade(max_concurrency=16)

    assert emu.object("project", "7")["status"] == "ARCHIVED"
    assert len(summary["pools"]["archived"]) == len(POOLS)
    assert any(r.status == 429 for r in emu.requests)
    assert len(emu.operations("POOL.ARCHIVE")) == len(POOLS)


def test_under_a_rate_limit_it_meets_the_limit_once_then_keeps_under_it(emu):
    emu.rate_limit = 20

    summary, _ = cascade(max_concurrency=32)

    assert emu.object("project", "7")["status"] == "ARCHIVED"
    assert len(summary["pools"]["archived"]) == len(POOLS)
    refused = [r.status == 429 for r in sorted(emu.requests, key=lambda r: r.time)]
    assert any(refused), "32 workers starting together should meet a limit of 20 a second"
    # One burst of 429s, from the start; none once the pace was set from what Toloka accepted. In the
    # order the requests arrived: every request between the first 429 and the last one was refused too.
    first, last = refused.index(True), len(refused) - refused[::-1].index(True)
    assert all(refused[first:last]), "a 429 came after an accepted request that followed the first 429"
    assert len(emu.operations("POOL.ARCHIVE")) == len(POOLS)


def test_workers_reuse_connections_instead_of_opening_one_per_request(emu, capfd, caplog):
    emu.latency = 0.05  # so that all 24 workers have a request in flight at once

    cascade(max_concurrency=24)

    output = "".join(capfd.readouterr()) + caplog.text  # urllib3 logs through the standard library
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    assert "Connection pool is full, discarding connection" not in output


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"close_open": True}, "close_open=True needs cascade=True"),
        ({"dry_run": True}, "dry_run=True needs cascade=True"),
        ({"cascade": True, "max_concurrency": 0}, "max_concurrency=0"),
        ({"cascade": True, "max_concurrency": 301}, "at most 300"),
        ({"cascade": True, "wait_for_completion": False}, "wait_for_completion=False"),
    ],
)
def test_bad_arguments_fail_before_any_request(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TolokaArchiveProjectOperator(task_id="archive", project_id="7", **kwargs)
