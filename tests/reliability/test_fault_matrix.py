"""Every transient fault, on the archive request, on the polls and on both, for each archive operator.

Within the retry budget the task must end with the object ARCHIVED and exactly one archive operation in
Toloka; past it, the archive request must fail with a message naming the fault and the attempts, still
without a second operation, while the polls of the running operation wait the outage out.
``benchmarks/fault_report.py`` runs the same cases and prints the totals.

One emulator serves every case of the module, ``reset()`` between them; a case with a slow fault waits
for the server to finish the requests its client gave up on, so they cannot act on the next case.

No case leans on timing: the archive operation never ends by itself. It ends when the emulator's clock is
advanced, which happens once the task has read it (every poll fault used up, then one answer), so every case
takes the same path (a retried POST always meets the running operation, never a finished one) however
loaded the machine is.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.emulator.server import TolokaEmulator
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import (
    TolokaArchiveOperator,
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)

MAX_RETRIES = 3  # four attempts per request
HTTP_TIMEOUT = 0.15  # seconds; the "read time-out" fault answers later than this
# Far longer than any case: the operation ends only when ``finished_once_polled`` advances the clock.
OPERATION_DURATION = 3600.0
POLL_INTERVAL = 0.02

# name -> inject_fault() arguments, and what the failure message names once the budget is spent.
FAULTS: dict[str, tuple[dict[str, Any], str | None]] = {
    "429": ({"kind": "429"}, "HTTP 429 TOO_MANY_REQUESTS"),
    # Toloka can send whole seconds only (RFC 9110): each retry waits a real second, see WHOLE_SECONDS.
    "429 + Retry-After": ({"kind": "429", "retry_after": 1}, "HTTP 429 TOO_MANY_REQUESTS"),
    "500": ({"kind": "500"}, "HTTP 500 INTERNAL_ERROR"),
    "502": ({"kind": "502"}, "HTTP 502"),
    "503": ({"kind": "503"}, "HTTP 503 REMOTE_SERVICE_UNAVAILABLE"),
    "504": ({"kind": "504"}, "HTTP 504"),
    "connection reset": ({"kind": "drop"}, "ConnectionError"),
    "answer lost": ({"kind": "drop", "when": "after"}, "ConnectionError"),
    "read time-out": ({"kind": "slow", "delay": HTTP_TIMEOUT * 1.6}, "ReadTimeout"),
    # Never fails: slower than usual, but within the time-out, so nothing is retried.
    "slow, within time-out": ({"kind": "slow", "delay": HTTP_TIMEOUT / 3}, None),
}
# Where the fault strikes: (path substring, method) pairs.
TARGETS: dict[str, list[tuple[str, str]]] = {
    "archive POST": [("/archive", "POST")],
    "operation polls": [("/operations/", "GET")],
    "both": [("/archive", "POST"), ("/operations/", "GET")],
}
OPERATORS: dict[str, tuple[type[TolokaArchiveOperator], str, str]] = {
    "pool": (TolokaArchivePoolOperator, "pool_id", "10"),
    "training": (TolokaArchiveTrainingOperator, "training_id", "20"),
    "project": (TolokaArchiveProjectOperator, "project_id", "1"),
}
# Faults whose retries wait whole seconds: in the tests they strike one operator's archive request only
# (the hook's one retry path is the same for all); benchmarks/fault_report.py still runs every case.
WHOLE_SECONDS = {"429 + Retry-After"}


def cases(operators: list[str], targets: list[str], faults: list[str]) -> list[tuple[str, str, str]]:
    return [
        (operator, fault, target)
        for operator in operators
        for fault in faults
        for target in targets
        if fault not in WHOLE_SECONDS or (operator == operators[0] and target == "archive POST")
    ]


@dataclass
class Outcome:
    """What one task run left behind."""

    error: BaseException | None
    status_before: str
    status_after: str
    archive_operations: int
    faults_injected: int
    faulted_requests: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> bool:
        """The task said it archived the object and it is not archived, or the object changed otherwise."""
        if self.error is None:
            return self.status_after != "ARCHIVED"
        return self.status_after not in ("ARCHIVED", self.status_before)

    @property
    def duplicated(self) -> bool:
        return self.archive_operations > 1


def seed(emu: TolokaEmulator, kind: str) -> None:
    """The object to archive, CLOSED, with everything it depends on already archived."""
    emu.add_project("1")
    emu.add_pool("10", project_id="1", status="ARCHIVED" if kind != "pool" else "CLOSED")
    emu.add_training(
        "20", project_id="1", status="ARCHIVED" if kind == "project" else "CLOSED", linked_pool_ids=("10",)
    )


@contextmanager
def connection(emu: TolokaEmulator) -> Iterator[None]:
    """``toloka_default`` at ``emu``, with a small retry budget and HTTP time-out in the connection extra."""
    conn = json.loads(emu.airflow_conn_json())
    conn["extra"].update(max_retries=MAX_RETRIES, timeout=HTTP_TIMEOUT)
    saved = os.environ.get("AIRFLOW_CONN_TOLOKA_DEFAULT")
    os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = json.dumps(conn)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_TOLOKA_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_TOLOKA_DEFAULT"] = saved


def operation_polls(emu: TolokaEmulator) -> int:
    """Polls of one operation (``GET .../operations/<id>``) answered so far, faulted ones included."""
    return sum(1 for r in emu.requests if r.method == "GET" and "/operations/" in r.path)


@contextmanager
def finished_once_polled(emu: TolokaEmulator, poll_faults: int) -> Iterator[None]:
    """Advance the emulator's clock past the operation once the task has polled it ``poll_faults + 1`` times.

    At most ``poll_faults`` polls are faulted, so by then the task has read the running operation at least
    once: the operation ends after the poll, never before it, whatever the machine's load. Counted from the
    request log (a record exists once its answer has gone out), not from the wall clock.
    """
    done = threading.Event()

    def finish() -> None:
        while not done.wait(0.005):
            if operation_polls(emu) > poll_faults:
                emu.advance_clock(OPERATION_DURATION)
                return

    finisher = threading.Thread(target=finish, name="finish-operation", daemon=True)
    finisher.start()
    try:
        yield
    finally:
        done.set()
        finisher.join()


def run_case(
    emu: TolokaEmulator, operator_name: str, fault_name: str, target: str, *, over_budget: bool = False
) -> Outcome:
    """Run one archive task against the emulator, reset, with the fault injected; report what happened."""
    operator_cls, id_field, object_id = OPERATORS[operator_name]
    fault, _ = FAULTS[fault_name]
    emu.reset()
    emu.operation_duration = OPERATION_DURATION
    with connection(emu):
        seed(emu, operator_name)
        status_before = emu.object(operator_name, object_id)["status"]
        count = MAX_RETRIES + 1 if over_budget else 2
        for path, method in TARGETS[target]:
            emu.inject_fault(count=count, path=path, method=method, **fault)
        operator = operator_cls(task_id="archive", poll_interval=POLL_INTERVAL, **{id_field: object_id})
        # The operator's own hook, with millisecond back-off instead of seconds so the matrix stays fast.
        operator.hook = TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05)
        poll_faults = count if ("/operations/", "GET") in TARGETS[target] else 0
        error: BaseException | None = None
        with finished_once_polled(emu, poll_faults):
            try:
                operator.execute({"ti": RecordingTI()})
            except Exception as exc:
                error = exc
        if fault["kind"] == "slow":
            time.sleep(fault["delay"])  # let the server finish what the client stopped waiting for
        faulted: dict[str, int] = {}
        for record in emu.requests:
            if record.status == 0 or record.status >= 400:
                faulted[record.method + " " + record.path] = (
                    faulted.get(record.method + " " + record.path, 0) + 1
                )
        return Outcome(
            error=error,
            status_before=status_before,
            status_after=emu.object(operator_name, object_id)["status"],
            archive_operations=len(emu.operations(type=f"{operator_name.upper()}.ARCHIVE")),
            faults_injected=count * len(TARGETS[target]),
            faulted_requests=faulted,
        )


@pytest.fixture(scope="module")
def emu() -> Iterator[TolokaEmulator]:
    with TolokaEmulator() as emulator:
        yield emulator


@pytest.mark.parametrize(
    ("operator_name", "fault_name", "target"), cases(list(OPERATORS), list(TARGETS), list(FAULTS))
)
def test_faults_within_the_retry_budget_archive_exactly_once(emu, operator_name, fault_name, target):
    outcome = run_case(emu, operator_name, fault_name, target)

    assert outcome.error is None, f"the task failed: {outcome.error}"
    assert outcome.status_after == "ARCHIVED"
    assert outcome.archive_operations == 1
    if FAULTS[fault_name][0]["kind"] not in ("slow",):
        # The faults really struck where they were aimed.
        for path, method in TARGETS[target]:
            assert any(k.startswith(method) and path in k for k in outcome.faulted_requests), outcome


OVER_BUDGET = [name for name, (_, named) in FAULTS.items() if named is not None]


# Giving up is the hook's one code path whatever the operator, so the pool operator stands for all three.
@pytest.mark.parametrize("fault_name", OVER_BUDGET)
def test_faults_past_the_retry_budget_fail_naming_fault_and_attempts(emu, fault_name):
    outcome = run_case(emu, "pool", fault_name, "archive POST", over_budget=True)

    assert outcome.error is not None, "the task should have given up"
    message = str(outcome.error)
    assert f"failed after {MAX_RETRIES + 1} attempts" in message
    assert FAULTS[fault_name][1] in message
    assert not outcome.lost
    assert outcome.archive_operations <= 1


# Polls read an operation that runs in Toloka anyway: past the budget they wait the outage out.
@pytest.mark.parametrize("fault_name", OVER_BUDGET)
def test_polls_failing_past_the_retry_budget_are_waited_out(emu, fault_name):
    outcome = run_case(emu, "pool", fault_name, "operation polls", over_budget=True)

    assert outcome.error is None, f"the task failed: {outcome.error}"
    assert outcome.status_after == "ARCHIVED"
    assert outcome.archive_operations == 1
    if FAULTS[fault_name][0]["kind"] != "slow":  # a read time-out is answered 200, too late for the client
        assert sum(outcome.faulted_requests.values()) == MAX_RETRIES + 1
