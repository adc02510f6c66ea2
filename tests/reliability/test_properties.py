"""Property: whatever mix of closing, archiving and faults, the world stays one Toloka would allow.

Hypothesis draws a project with a few pools and trainings in consistent states, then a sequence of
steps through the hook (close, archive and wait, archive without waiting, inject a fault). After every
step: an archived project has only archived pools and trainings, an archived training only archived
linked pools, nothing archived ever comes back, no object has two operations running or two
successful archives, and every archive the hook reported as done left the object ARCHIVED.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_toloka.exceptions import TolokaError
from airflow_provider_toloka.hooks.toloka import TolokaHook

POOLS = ("11", "12", "13")
TRAININGS = ("21", "22")
SLOW_DELAY = 0.15  # longer than the hook's 0.1 s time-out: a read time-out

pool_status = st.sampled_from(["OPEN", "CLOSED", "ARCHIVED"])


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """Pools and trainings of project 1 in states the API can reach (archived training: linked pools too)."""
    pools = {pool_id: draw(pool_status) for pool_id in POOLS}
    trainings = {}
    for training_id in TRAININGS:
        linked = draw(st.lists(st.sampled_from(POOLS), unique=True, max_size=2))
        status = draw(pool_status)
        if status == "ARCHIVED" and any(pools[p] != "ARCHIVED" for p in linked):
            status = "CLOSED"
        trainings[training_id] = (status, tuple(linked))
    return {"pools": pools, "trainings": trainings}


objects = st.one_of(
    st.tuples(st.just("pool"), st.sampled_from(POOLS)),
    st.tuples(st.just("training"), st.sampled_from(TRAININGS)),
    st.tuples(st.just("project"), st.just("1")),
)
faults = st.tuples(
    st.just("fault"),
    st.sampled_from(["429", "500", "502", "503", "504", "drop", "drop-after", "slow"]),
    st.sampled_from(["/archive", "/close", "/operations"]),
    st.integers(min_value=1, max_value=4),  # more than the hook's 3 attempts: some requests give up
)
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["close", "archive", "archive-no-wait"]), objects),
        faults,
    ),
    min_size=1,
    max_size=7,
)


def seed(emu: Any, world: dict[str, Any]) -> None:
    emu.add_project("1")
    for pool_id, status in world["pools"].items():
        emu.add_pool(pool_id, project_id="1", status=status)
    for training_id, (status, linked) in world["trainings"].items():
        emu.add_training(training_id, project_id="1", status=status, linked_pool_ids=linked)


def statuses(emu: Any) -> dict[tuple[str, str], str]:
    keys = [("project", "1")] + [("pool", p) for p in POOLS] + [("training", t) for t in TRAININGS]
    return {key: emu.object(*key)["status"] for key in keys}


def check_invariants(emu: Any, world: dict[str, Any], before: dict[tuple[str, str], str]) -> None:
    now = statuses(emu)
    for key, status in before.items():
        assert status != "ARCHIVED" or now[key] == "ARCHIVED", f"{key} came back from ARCHIVED"
    if now[("project", "1")] == "ARCHIVED":
        assert all(s == "ARCHIVED" for k, s in now.items()), f"archived project with live children: {now}"
    for training_id, (_, linked) in world["trainings"].items():
        if now[("training", training_id)] == "ARCHIVED":
            assert all(now[("pool", p)] == "ARCHIVED" for p in linked), f"training {training_id}: {now}"
    operations = emu.operations()
    running = Counter(
        (op["type"].split(".")[0], next(iter(op["parameters"].values())))
        for op in operations
        if op["status"] in ("PENDING", "RUNNING")
    )
    assert max(running.values(), default=0) <= 1, f"two operations at once: {running}"
    archived = Counter(
        op["type"] + str(op["parameters"])
        for op in operations
        if op["type"].endswith(".ARCHIVE") and op["status"] == "SUCCESS"
    )
    assert max(archived.values(), default=0) <= 1, f"archived twice: {archived}"


def apply(emu: Any, hook: TolokaHook, step: tuple[Any, ...]) -> None:
    """Run one step; Toloka's refusals and spent retry budgets are allowed outcomes, nothing else is."""
    if step[0] == "fault":
        _, kind, path, count = step
        extra = {"when": "after"} if kind == "drop-after" else {"delay": SLOW_DELAY} if kind == "slow" else {}
        emu.inject_fault("drop" if kind == "drop-after" else kind, count=count, path=path, **extra)
        return
    action, (kind, object_id) = step
    try:
        if action == "close":
            if kind == "project":
                return
            operation = hook.close_pool(object_id) if kind == "pool" else hook.close_training(object_id)
            if operation is not None:
                hook.wait_for_operation(operation["id"], poll_interval=0.02, timeout=3)
            return
        operation = hook.archive(kind, object_id)
        if operation is not None and action == "archive":
            operation = hook.wait_for_operation(operation["id"], poll_interval=0.02, timeout=3)
    except TolokaError:
        return
    if operation is None or action == "archive":
        assert emu.object(kind, object_id)["status"] == "ARCHIVED", (
            f"the hook said {kind} {object_id} is archived"
        )


@pytest.fixture
def prop_hook(toloka_conn) -> TolokaHook:
    return TolokaHook(timeout=0.1, max_retries=2, retry_min_wait=0.005, retry_max_wait=0.02)


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds(), plan=steps)
def test_no_sequence_of_steps_and_faults_breaks_tolokas_rules(toloka_conn, prop_hook, world, plan):
    emu = toloka_conn
    emu.reset()
    emu.operation_duration = 0.03
    seed(emu, world)
    try:
        for step in plan:
            before = statuses(emu)
            apply(emu, prop_hook, step)
            check_invariants(emu, world, before)
    finally:
        if any(step[0] == "fault" and step[1] == "slow" for step in plan):
            time.sleep(SLOW_DELAY)  # requests the hook gave up on finish before the next example's reset
