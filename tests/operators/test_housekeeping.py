"""``TolokaHousekeepingOperator`` over a whole emulated account, over real HTTP.

The account's clock is the emulator's: pools age by ``advance_clock``, never by sleeping, and the
task counts idle days up to that same clock.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pendulum
import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.emulator import model
from airflow_provider_toloka.housekeeping import run as housekeeping_run
from airflow_provider_toloka.housekeeping.report import TolokaHousekeepingFailed
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator

DAY = 86400
IDLE = [str(n) for n in (*range(1, 21), *range(45, 51))]  # 26 projects idle for 42 days
OPEN = [str(n) for n in range(21, 29)]  # an open pool each
RECENT = [str(n) for n in range(29, 41)]  # something in them stopped (or was made) 2 days ago
LOCKED = ["41", "42"]
REJECTED = ["43", "44"]  # idle, but a pool had an assignment rejected yesterday
ARCHIVED = [str(n) for n in range(90, 95)]  # archived long ago: not active, not listed


@pytest.fixture
def emu(toloka_conn, monkeypatch):
    return prepare(toloka_conn, monkeypatch)


@pytest.fixture
def held_emu(held_until_limited_conn, monkeypatch):
    """``emu`` on an emulator whose clock stands until its first 429 (``held_until_limited_conn``)."""
    return prepare(held_until_limited_conn, monkeypatch)


def prepare(toloka_conn, monkeypatch):
    toloka_conn.operation_duration = 0.1
    # The task counts idle days up to the account's clock, which tests move forward.
    monkeypatch.setattr(housekeeping_run, "utcnow", lambda: pendulum.instance(toloka_conn.now))
    # Toloka does not show when a pool last rejected an assignment: only the archive refusal tells.
    # (Where the emulator still shows it, hide it.)
    to_json = model.Pool.to_json

    def without_last_rejection(pool, *args, **kwargs):
        body = to_json(pool, *args, **kwargs)
        body.pop("last_rejection", None)
        return body

    monkeypatch.setattr(model.Pool, "to_json", without_last_rejection)
    return toloka_conn


def pool_ids(project_id: str, count: int) -> list[str]:
    return [f"{project_id}0{n}" for n in range(count)]


@pytest.fixture
def account(emu):
    """50 active projects, built over 42 days of the emulator's clock, plus 5 archived ones."""
    start = emu.now
    for project_id in IDLE:
        emu.add_project(project_id)
        if project_id == "2":
            continue  # no pools at all: idle since the project was made
        pools = pool_ids(project_id, 1 + int(project_id) % 3)
        for pool_id in pools:
            emu.add_pool(pool_id, project_id, status="ARCHIVED" if project_id == "3" else "CLOSED")
        if int(project_id) % 3 == 0:
            emu.add_training(f"{project_id}9", project_id, linked_pool_ids=pools)
    for project_id in OPEN:
        emu.add_pool(f"{project_id}00", project_id, status="CLOSED")
        emu.add_pool(f"{project_id}01", project_id, status="OPEN")
    for project_id in LOCKED:
        emu.add_pool(f"{project_id}00", project_id, status="LOCKED")
    for project_id in ("37", "38"):
        emu.add_pool(f"{project_id}00", project_id, status="CLOSED")
    for project_id in ARCHIVED:
        emu.add_project(project_id, status="ARCHIVED")
        emu.add_pool(f"{project_id}00", project_id, status="ARCHIVED")

    emu.advance_clock(40 * DAY)
    recent = emu.now
    for project_id in RECENT[:8]:
        emu.add_pool(f"{project_id}01", project_id, status="CLOSED")  # closed today
    emu.add_training("379", "37", linked_pool_ids=["3700"])  # a training stopped today
    emu.add_pool("3801", "38", status="ARCHIVED")  # a pool archived today
    emu.add_project("39")  # made today, no pools yet
    emu.add_pool("4000", "40", created=start, last_started=recent, last_stopped=recent)  # reopened, closed

    emu.advance_clock(2 * DAY)
    for project_id in REJECTED:
        for pool_id in pool_ids(project_id, 2):
            emu.add_pool(pool_id, project_id, created=start, last_stopped=start)
        emu.add_pool(
            f"{project_id}02",
            project_id,
            created=start,
            last_stopped=start,
            last_rejection=emu.now - dt.timedelta(days=1),
        )
    return {"start": start, "recent": recent}


def housekeeping(**kwargs):
    """Run the task as Airflow would call it: the summary, and what it pushed besides."""
    kwargs.setdefault("min_idle_days", 30)
    operator = TolokaHousekeepingOperator(task_id="housekeeping", poll_interval=0.2, **kwargs)
    ti = RecordingTI()
    return operator.execute({"ti": ti}), ti.pushed


def posts(emu):
    return [r for r in emu.requests if r.method == "POST"]


def status(emu, project_id):
    return emu.object("project", project_id)["status"]


def test_dry_run_over_50_projects_plans_each_and_says_why_it_skips(emu, account):
    summary, pushed = housekeeping(dry_run=True)

    assert posts(emu) == []
    assert {status(emu, p) for p in [*IDLE, *OPEN, *RECENT, *LOCKED, *REJECTED]} == {"ACTIVE"}
    assert pushed == {}
    assert summary["dry_run"] is True
    assert summary["counts"] == {"checked": 50, "archived": 28, "skipped": 22, "failed": 0}
    # Toloka does not show the rejection window, so the plan includes those projects.
    assert summary["archived"] == sorted([*IDLE, *REJECTED], key=int)
    skipped = summary["skipped"]
    assert list(skipped["open"]) == OPEN
    assert skipped["open"]["21"] == "open: pool 2101; close them, or pass close_open=True"
    assert list(skipped["blocked"]) == LOCKED
    assert "pool 4100 (LOCKED)" in skipped["blocked"]["41"]
    assert skipped["rejection_window"] == {}
    assert skipped["unknown_activity"] == {}
    assert list(skipped["recent_activity"]) == RECENT
    eligible = pendulum.instance(account["recent"]).add(days=30)
    for why in skipped["recent_activity"].values():
        found = re.search(r"eligible from (\S+)$", why)
        assert found, why
        assert abs((pendulum.parse(found[1]) - eligible).total_seconds()) < 60, why
    assert skipped["recent_activity"]["37"].startswith("training 379 last_stopped ")
    assert skipped["recent_activity"]["38"].startswith("pool 3801 last_stopped ")
    assert skipped["recent_activity"]["39"].startswith("project 39 created ")
    assert skipped["recent_activity"]["40"].startswith("pool 4000 last_stopped ")
    assert not set(summary["archived"]) & set(ARCHIVED)
    assert not any(p in ARCHIVED for reason in skipped.values() for p in reason)


def test_real_run_archives_exactly_the_planned_projects_and_reports_the_rejection_window(emu, account):
    planned, _ = housekeeping(dry_run=True)

    summary, _ = housekeeping()

    assert summary["dry_run"] is False
    held_back = summary["skipped"]["rejection_window"]
    assert list(held_back) == REJECTED
    assert "pool 4302: 409 THERE_IS_REJECTED_ASSIGNMENT" in held_back["43"]
    assert summary["archived"] == [p for p in planned["archived"] if p not in REJECTED]
    assert {p: status(emu, p) for p in summary["archived"]} == dict.fromkeys(IDLE, "ARCHIVED")
    for project_id in [*OPEN, *RECENT, *LOCKED, *REJECTED]:
        assert status(emu, project_id) == "ACTIVE"
    for reason in ("open", "blocked", "recent_activity", "unknown_activity"):
        assert summary["skipped"][reason] == planned["skipped"][reason]
    assert summary["failed"] == {}
    # Nothing in a skipped project was touched, except the refused archives that found the window.
    touched = set()
    for request in posts(emu):
        _, _, _, kinds, object_id, _ = request.path.split("/")
        kind = kinds[:-1]
        touched.add(object_id if kind == "project" else emu.object(kind, object_id)["project_id"])
    assert touched == {*IDLE, *REJECTED}
    assert emu.object("pool", "2101")["status"] == "OPEN"
    assert json.loads(json.dumps(summary)) == summary


def test_later_runs_archive_what_was_waiting_once_the_account_clock_passes_its_date(emu, account):
    housekeeping()
    emu.advance_clock(30 * DAY)  # past the rejection window and past the recent projects' date

    summary, _ = housekeeping()

    assert summary["archived"] == sorted([*RECENT, *REJECTED], key=int)
    assert {status(emu, p) for p in [*RECENT, *REJECTED]} == {"ARCHIVED"}
    assert list(summary["skipped"]["open"]) == OPEN
    assert summary["counts"]["checked"] == 50 - len(IDLE)


def test_close_open_closes_the_open_pools_of_idle_projects(emu, account):
    emu.advance_clock(30 * DAY)  # the open pools were opened 72 days ago; 40's reopening is 32 days old

    summary, _ = housekeeping(close_open=True, min_idle_days=60)

    assert set(OPEN) <= set(summary["archived"])
    assert emu.object("pool", "2101")["status"] == "ARCHIVED"
    closed = sorted(op["parameters"]["pool_id"] for op in emu.operations("POOL.CLOSE"))
    assert closed == [f"{p}01" for p in OPEN]
    assert "40" in summary["skipped"]["recent_activity"]


def test_a_failed_project_does_not_stop_the_others_and_fails_the_task_at_the_end(emu, account):
    emu.fail_next("pool", "100")

    with pytest.raises(TolokaHousekeepingFailed) as raised:
        housekeeping()

    message = str(raised.value)
    assert "Housekeeping failed for 1 of 50 project(s)" in message
    assert "project 1: Cascade archive of project 1 stopped: could not archive pool 100" in message
    assert status(emu, "1") == "ACTIVE"
    assert {status(emu, p) for p in IDLE if p != "1"} == {"ARCHIVED"}
    summary = raised.value.summary
    assert list(summary["failed"]) == ["1"]
    assert summary["counts"]["failed"] == 1
    assert list(summary["skipped"]["rejection_window"]) == REJECTED


def test_a_failed_task_still_pushes_its_summary(emu, account):
    emu.fail_next("pool", "100")
    ti = RecordingTI()
    operator = TolokaHousekeepingOperator(task_id="housekeeping", min_idle_days=30, poll_interval=0.2)

    with pytest.raises(TolokaHousekeepingFailed):
        operator.execute({"ti": ti})

    assert ti.pushed["return_value"]["failed"].keys() == {"1"}
    assert len(ti.pushed["return_value"]["archived"]) == len(IDLE) - 1


def test_the_log_shows_a_table_with_a_row_per_project(emu, account, monkeypatch):
    lines: list[str] = []
    operator = TolokaHousekeepingOperator(task_id="housekeeping", min_idle_days=30, dry_run=True)
    monkeypatch.setattr(operator.log, "info", lambda event, *args, **kw: lines.append(event % args))

    operator.execute({"ti": RecordingTI()})

    table = next(line for line in lines if line.startswith("Housekeeping")).splitlines()
    assert table[0] == (
        "Housekeeping (dry run: nothing was changed): 50 active project(s), 28 to archive, "
        "22 skipped, 0 failed (min_idle_days=30, close_open=False)"
    )
    assert table[1].split() == ["project", "outcome", "detail"]
    rows = {line.split()[0]: line for line in table[2:]}
    assert sorted(rows, key=int) == sorted([*IDLE, *OPEN, *RECENT, *LOCKED, *REJECTED], key=int)
    assert re.match(r"1 +would archive +idle since \S+ \(pool 101 last_stopped\)$", rows["1"])
    assert re.match(r"21 +skip: open +open: pool 2101;", rows["21"])
    assert re.match(r"29 +skip: recent_activity +pool 2901 last_stopped \S+; eligible from ", rows["29"])


def test_projects_are_handled_at_most_max_concurrency_at_once(emu):
    for number in range(1, 13):
        emu.add_pool(f"{number}0", str(number))
    emu.latency = 0.5  # every request stays in flight a while, so overlaps show
    emu.clear_requests()

    summary, _ = housekeeping(dry_run=True, max_concurrency=3)

    assert summary["counts"]["checked"] == 12
    lists = [r for r in emu.requests if r.path in ("/api/v1/pools", "/api/v1/trainings")]
    assert len(lists) == 24
    edges = sorted([(r.time, 1) for r in lists] + [(r.time + r.duration, -1) for r in lists])
    in_flight = peak = 0
    for _, step in edges:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 3


def test_every_project_waits_out_a_429_together(held_emu, roomy_learned_pace):
    # The emulator's clock stands until the limit is met, so the 16 projects meet it by count, however
    # slow the machine; the pace learned from it keeps to 60 % of what was accepted, so arrivals bunched
    # by a busy machine do not meet it again (``roomy_learned_pace``).
    emu = held_emu
    for number in range(1, 25):
        emu.add_pool(f"{number}0", str(number))
    emu.advance_clock(DAY)
    emu.rate_limit = 30

    summary, _ = housekeeping(min_idle_days=0.5, max_concurrency=16)

    assert len(summary["archived"]) == 24
    refused = [r for r in emu.requests if r.status == 429]
    assert refused, "16 projects at once should meet a limit of 30 requests a second"
    # One burst of 429s: at most one per project in flight when the first came back (16), none once the
    # shared pause and pace were set. Each project backing off on its own meets the limit again and again.
    assert len(refused) <= 16, f"{len(refused)} refusals: the projects did not wait out the 429 together"


def test_an_account_without_active_projects_is_a_quiet_success(emu):
    emu.add_project("1", status="ARCHIVED")

    summary, _ = housekeeping()

    assert summary["counts"] == {"checked": 0, "archived": 0, "skipped": 0, "failed": 0}
    assert [r.path for r in emu.requests] == ["/api/v1/projects"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_idle_days": -1}, r"min_idle_days=-1 is not valid: pass a number of days, 0 or more"),
        ({"min_idle_days": "30"}, r"min_idle_days='30' is not valid"),
        ({"min_idle_days": float("nan")}, r"min_idle_days=nan is not valid"),
        ({"max_concurrency": 0}, r"max_concurrency=0 is not valid"),
        ({"max_concurrency": 65}, r"max_concurrency=65 is not valid: pass at most 64"),
        ({"poll_interval": 0}, r"poll_interval=0 is not valid"),
    ],
)
def test_bad_arguments_fail_before_any_request(toloka_conn, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TolokaHousekeepingOperator(task_id="housekeeping", **kwargs)
    assert toloka_conn.requests == []


@pytest.mark.parametrize("declared", [None, 20])
def test_a_declared_request_rate_is_one_pace_for_every_project(request, declare_rate, declared):
    # Unset, the emulator's clock stands until the limit is met (``held_until_limited_conn``): the
    # projects meet it by count, not by fitting a burst into a real second.
    emu = request.getfixturevalue("held_emu" if declared is None else "emu")
    for number in range(1, 13):
        emu.add_pool(f"{number}0", str(number))
    emu.advance_clock(DAY)
    emu.rate_limit = 30
    if declared is not None:
        declare_rate(declared)  # two thirds of the limit: 31 requests at 20 a second span 1.53 s

    summary, _ = housekeeping(min_idle_days=0.5, max_concurrency=16)

    assert len(summary["archived"]) == 12
    refused = [r for r in emu.requests if r.status == 429]
    if declared is None:
        assert refused, "12 projects at once, each sending what it can, meet a limit of 30 a second"
    else:
        assert refused == [], "one declared pace for all the projects' threads never meets the limit"
