"""``TolokaArchiveProjectOperator(cascade=True)`` against the emulator over real HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.exceptions import (
    TolokaCascadeBlocked,
    TolokaCascadeFailed,
    TolokaCascadeHeldBack,
)
from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

POOLS = [str(100 + i) for i in range(40)]
# Each training is linked to a slice of the pools; the last one to none.
TRAININGS = {"900": POOLS[:10], "901": POOLS[10:25], "902": []}


def seed(emulator):
    emulator.operation_duration = 0.1
    emulator.add_project("7")
    for pool_id in POOLS:
        emulator.add_pool(pool_id, project_id="7")
    for training_id, linked in TRAININGS.items():
        emulator.add_training(training_id, project_id="7", linked_pool_ids=linked)
    return emulator


@pytest.fixture
def emu(toloka_conn):
    return seed(toloka_conn)


@pytest.fixture
def held_emu(held_until_limited_conn):
    """The project on an emulator whose clock stands until its first 429 (``held_until_limited_conn``)."""
    return seed(held_until_limited_conn)


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


def submitted(emu, op_type, id_field):
    return {op["parameters"][id_field]: op["submitted"] for op in emu.operations(op_type)}


def test_each_training_starts_as_soon_as_its_own_pools_finish(emu):
    # Four in flight: the pools go in waves, so "after every pool" and "after its pools" differ.
    cascade(max_concurrency=4)

    pools = submitted(emu, "POOL.ARCHIVE", "pool_id")
    trainings = submitted(emu, "TRAINING.ARCHIVE", "training_id")
    finished = {op["parameters"]["pool_id"]: op["finished"] for op in emu.operations("POOL.ARCHIVE")}
    # 902 waits on no pool: it goes in the first wave, before most pools.
    assert sum(pools[p] < trainings["902"] for p in POOLS) < len(POOLS) // 2
    # 900 waits on pools 100-109 only: it starts once they finished, while unlinked pools still wait.
    assert all(finished[p] <= trainings["900"] for p in TRAININGS["900"])
    unlinked = POOLS[25:]
    assert any(pools[p] > trainings["900"] for p in unlinked)
    assert any(pools[p] > trainings["901"] for p in unlinked)
    project = emu.operations("PROJECT.ARCHIVE")[0]["submitted"]
    assert project >= max(op["finished"] for op in emu.operations() if op["type"] != "PROJECT.ARCHIVE")


def test_under_a_declared_pace_trainings_go_after_every_pool(emu, declare_rate):
    # A pace makes every request a turn: a training sent while pools wait pushes the last pool back,
    # so the trainings (902 too, which waits on no pool) go once every pool archive is sent. The runner
    # holds them until the last pool's request is answered (before, which worker thread reached the pace
    # first decided: on a busy machine a training came 6 ms before the last pool).
    declare_rate(300)
    # The last pool's answer is slow: a training sent before it is answered would start its operation
    # first, whichever thread the CPU runs first.
    emu.inject_fault("slow", path=f"/pools/{POOLS[-1]}/archive", delay=0.5)
    cascade(max_concurrency=4)

    pools = submitted(emu, "POOL.ARCHIVE", "pool_id")
    trainings = submitted(emu, "TRAINING.ARCHIVE", "training_id")
    assert min(trainings.values()) >= max(pools.values())
    assert set(trainings) == set(TRAININGS)
    project = emu.operations("PROJECT.ARCHIVE")[0]["submitted"]
    assert project >= max(op["finished"] for op in emu.operations() if op["type"] != "PROJECT.ARCHIVE")


def test_a_pool_in_its_rejection_window_holds_back_only_what_needs_it(emu):
    emu.add_pool("110", project_id="7", last_rejection=emu.now - dt.timedelta(days=2))

    with pytest.raises(TolokaCascadeHeldBack) as caught:
        cascade(max_concurrency=8)

    error, message = caught.value, str(caught.value)
    assert isinstance(error, TolokaCascadeFailed)
    assert error.codes == {"THERE_IS_REJECTED_ASSIGNMENT"}
    assert "pool 110 (THERE_IS_REJECTED_ASSIGNMENT, request_id " in message
    assert "left with it: training 901 and project 7" in message
    assert "A retry after that window finishes the job" in message
    # Everything that does not need pool 110 is archived; 901 (linked to it) and the project wait.
    assert statuses(emu, "pool", [p for p in POOLS if p != "110"]) == {"ARCHIVED"}
    assert statuses(emu, "training", ["900", "902"]) == {"ARCHIVED"}
    assert statuses(emu, "training", ["901"]) | statuses(emu, "pool", ["110"]) == {"CLOSED"}
    assert emu.object("project", "7")["status"] == "ACTIVE"
    assert error.summary["not_archived"] == {"pools": ["110"], "trainings": ["901"], "project": ["7"]}
    assert not any(r.path.endswith(("/trainings/901/archive", "/projects/7/archive")) for r in posts(emu))

    emu.advance_clock(dt.timedelta(days=9).total_seconds())
    summary, _ = cascade()

    assert summary["pools"]["archived"] == ["110"]
    assert summary["trainings"]["archived"] == ["901"]
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    for op_type, field, expected in (
        ("POOL.ARCHIVE", "pool_id", POOLS),
        ("TRAINING.ARCHIVE", "training_id", list(TRAININGS)),
        ("PROJECT.ARCHIVE", "project_id", ["7"]),
    ):  # one operation per object over both runs: nothing archived twice
        assert sorted(op["parameters"][field] for op in emu.operations(op_type)) == sorted(expected)


def test_another_failure_beside_the_window_is_a_plain_failure(emu):
    emu.add_pool("110", project_id="7", last_rejection=emu.now - dt.timedelta(days=2))
    emu.fail_next("pool", "130", details={"reason": "injected"})

    with pytest.raises(TolokaCascadeFailed) as caught:
        cascade(max_concurrency=40)

    assert not isinstance(caught.value, TolokaCascadeHeldBack)
    assert "injected" in str(caught.value)


def test_the_timeout_bounds_the_whole_cascade_and_names_what_is_left(emu):
    emu.operation_duration = 30

    with pytest.raises(TolokaCascadeFailed) as caught:
        cascade(timeout=0.5)

    message = str(caught.value)
    assert "did not finish within timeout=0.5 s" in message
    assert "Not archived: pools 40 (" in message
    assert "project 7" in message
    assert not any(r.path.endswith("/projects/7/archive") for r in posts(emu))


def test_progress_is_logged_while_a_long_operation_runs(emu):
    from airflow_provider_toloka.cascade import CascadeRunner, plan_cascade
    from airflow_provider_toloka.hooks.toloka import TolokaHook

    emu.reset()
    emu.add_pool("100", project_id="8")
    emu.operation_duration = 1.0
    hook = TolokaHook()
    plan = plan_cascade(hook.get_project("8"), hook.list_pools("8"), [], close_open=False)
    log = RecordingLog()

    CascadeRunner(hook, max_concurrency=2, poll_interval=0.2, log=log, progress_every=0.05).run(plan)

    # Nothing finished for a second, yet progress lines came: the wait loop logs them.
    assert "pools archived 0/1; project archived 0/1" in log.lines
    assert log.lines[-1] == "pools archived 1/1; project archived 1/1"


def test_progress_logs_when_every_seconds_pass_without_a_line():
    from airflow_provider_toloka.cascade.execute import Progress

    now = [0.0]
    log = RecordingLog()
    progress = Progress(log, {"pools archived": 100}, every=10.0, clock=lambda: now[0])

    progress.advance("pools archived")  # 1 %: not a 10 % step
    now[0] = 9.9
    progress.tick()
    assert log.lines == []
    now[0] = 10.0
    progress.tick()
    assert log.lines == ["pools archived 1/100"]
    assert progress.seconds_until_due() == 10.0


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, event, *args, **kw):
        self.lines.append(event % args)

    def warning(self, event, *args, **kw):
        self.lines.append(event % args)


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
    assert "901" in summary["not_archived"]["trainings"]  # linked to pool 120
    assert set(summary["pools"]["archived"]) | set(summary["not_archived"]["pools"]) == set(POOLS)
    assert statuses(emu, "pool", summary["pools"]["archived"]) == {"ARCHIVED"}
    assert statuses(emu, "training", ["901"]) == {"CLOSED"}
    assert emu.object("project", "7")["status"] == "ACTIVE"
    assert not any(r.path.endswith(("/trainings/901/archive", "/projects/7/archive")) for r in posts(emu))

    summary_after_retry, _ = cascade()

    assert sorted(summary_after_retry["pools"]["skipped"]) == sorted(summary["pools"]["archived"])
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    pool_archives = [op["parameters"]["pool_id"] for op in emu.operations("POOL.ARCHIVE")]
    assert sorted(pool_archives) == sorted([*POOLS, "120"])  # only the failed pool twice


def test_429_storm_under_a_rate_limit_is_ridden_out(emu):
    emu.rate_limit = 30
    emu.inject_fault("429", count=3, path="/archive", retry_after=1)

    summary, _ = cascade(max_concurrency=16)

    assert emu.object("project", "7")["status"] == "ARCHIVED"
    assert len(summary["pools"]["archived"]) == len(POOLS)
    assert any(r.status == 429 for r in emu.requests)
    assert len(emu.operations("POOL.ARCHIVE")) == len(POOLS)


def test_under_a_rate_limit_it_meets_the_limit_once_then_keeps_under_it(held_emu, roomy_learned_pace):
    # The emulator's clock stands until the limit is met: the 21st request is refused however slow the
    # machine (no burst has to fit into a real second). The pace learned from it keeps to 60 % of what
    # was accepted, so arrivals bunched by a busy machine stay under the limit (``roomy_learned_pace``).
    emu = held_emu
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


@pytest.mark.parametrize("declared", [None, 15])
def test_a_declared_request_rate_paces_the_workers_from_the_first_request(request, declare_rate, declared):
    # Unset, the emulator's clock stands until the limit is met (``held_until_limited_conn``): the
    # workers' burst meets it by count, not by fitting into a real second.
    emu = request.getfixturevalue("held_emu" if declared is None else "emu")
    emu.rate_limit = 20
    if declared is not None:
        # Below the limit by a margin no scheduling delay on this machine reaches: 21 requests at 15 a
        # second span 1.36 s, so no second of arrivals can hold 21. At the limit itself, the figures are
        # benchmarks/bench_cascade.py's (its 429s after the first second).
        declare_rate(declared)

    summary, _ = cascade(max_concurrency=32)

    assert len(summary["pools"]["archived"]) == len(POOLS)
    assert emu.object("project", "7")["status"] == "ARCHIVED"
    refused = [r for r in emu.requests if r.status == 429]
    if declared is None:
        assert refused, "32 workers learning the pace from 429s meet a limit of 20 a second"
    else:
        assert refused == [], "paced from the first request, the workers never burst into the limit"
