"""How housekeeping reads a project's listing: idle time, skip reasons, and refusals that time clears."""

from __future__ import annotations

import pendulum
import pytest

from airflow_provider_toloka.exceptions import TolokaCascadeHeldBack
from airflow_provider_toloka.housekeeping.assess import assess
from airflow_provider_toloka.housekeeping.run import _held_back

NOW = pendulum.datetime(2026, 6, 1, 12, tz="UTC")
PROJECT = {"id": "1", "status": "ACTIVE", "created": "2025-01-01T00:00:00.000"}


def days_ago(days: float) -> str:
    return NOW.subtract(seconds=round(days * 86400)).format("YYYY-MM-DD[T]HH:mm:ss.SSS")


def pool(pool_id: str, status: str = "CLOSED", **times: str) -> dict[str, str]:
    return {"id": pool_id, "status": status, **times}


def verdict(pools=(), trainings=(), *, close_open=False, min_idle_days=30.0, project=PROJECT):
    return assess(project, pools, trainings, close_open=close_open, min_idle_days=min_idle_days, now=NOW)


def test_a_pool_never_opened_counts_from_when_it_was_made():
    assert verdict([pool("10", created=days_ago(31))]).reason is None
    recent = verdict([pool("10", created=days_ago(29))])
    assert recent.reason == "recent_activity"
    eligible = NOW.add(days=1).format("YYYY-MM-DD[T]HH:mm:ss")
    assert recent.detail == f"pool 10 created {days_ago(29)[:19]}Z; eligible from {eligible}Z"


def test_the_newest_time_of_any_pool_or_training_counts_archived_ones_included():
    pools = [
        pool("10", created=days_ago(90), last_started=days_ago(80), last_stopped=days_ago(70)),
        pool("11", "ARCHIVED", created=days_ago(90), last_stopped=days_ago(10)),
    ]
    trainings = [pool("20", created=days_ago(90), last_stopped=days_ago(40))]

    skipped = verdict(pools, trainings)

    assert skipped.reason == "recent_activity"
    assert skipped.detail.startswith(f"pool 11 last_stopped {days_ago(10)[:19]}Z")
    assert verdict(pools, trainings, min_idle_days=10).reason is None


def test_with_close_open_an_open_pool_counts_from_when_it_was_last_opened():
    opened = [pool("10", "OPEN", created=days_ago(100), last_started=days_ago(45), last_stopped=days_ago(60))]

    assert verdict(opened).reason == "open"
    assert verdict(opened, close_open=True).reason is None
    assert verdict(opened, close_open=True, min_idle_days=50).detail.startswith("pool 10 last_started")


def test_a_project_without_pools_counts_from_its_own_creation():
    assert verdict(project={**PROJECT, "created": days_ago(31)}).reason is None
    assert verdict(project={**PROJECT, "created": days_ago(1)}).reason == "recent_activity"


def test_no_times_at_all_is_not_taken_for_idle():
    unknown = verdict([pool("10")])
    assert (unknown.reason, unknown.detail) == (
        "unknown_activity",
        "pool 10 shows none of created, last_started, last_stopped",
    )
    assert verdict(project={"id": "1", "status": "ACTIVE"}).reason == "unknown_activity"


def test_zero_idle_days_archives_every_closed_project():
    assert (
        verdict([pool("10", created=days_ago(0), last_stopped=days_ago(0))], min_idle_days=0).reason is None
    )


def test_open_pools_are_named_and_locked_ones_block():
    many_open = [pool(str(n), "OPEN", created=days_ago(100)) for n in range(10, 17)]
    opened = verdict(many_open)
    assert opened.detail == (
        "open: pool 10, pool 11, pool 12, pool 13, pool 14 and 2 more; close them, or pass close_open=True"
    )
    locked = verdict([pool("10", "LOCKED", created=days_ago(100))], close_open=True)
    assert locked.reason == "blocked"
    assert locked.detail.startswith("pool 10 (LOCKED): locked by a running Toloka operation")


def held_back(pools: dict[str, str | None]) -> TolokaCascadeHeldBack:
    summary = {"pools": {"archived": ["11", "12"]}, "errors": {}, "held_back": pools}
    return TolokaCascadeHeldBack("Cascade archive of project 1 archived everything it could", summary, {"X"})


@pytest.mark.parametrize(
    ("pools", "named"),
    [({"10": None}, "pool 10"), ({"10": "20", "13": None}, "pool 10, pool 13"), ({}, "a pool")],
)
def test_a_held_back_cascade_names_the_pools_in_the_rejection_window(pools, named):
    # Whether a cascade is held back is the cascade's decision (TolokaCascadeHeldBack, see
    # tests/test_cascade.py); housekeeping only words it, naming the pools the cascade held back.
    reason = _held_back(held_back(pools))

    assert reason.startswith(f"{named}: 409 THERE_IS_REJECTED_ASSIGNMENT, archivable 9 days after")
    assert "2 other pool(s) archived meanwhile" in reason
