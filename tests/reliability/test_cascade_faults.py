"""Faults during ``TolokaArchiveProjectOperator(cascade=True)``, over real HTTP against the emulator.

The cascade sends many archive requests from worker threads and reads operations by page from one
watcher, so a fault can strike any of them at any time. What a user must see: within the retry budget
the task succeeds with everything ARCHIVED and exactly one archive operation per object (a lost answer
must not start a second one); past it, or on a refusal, the task fails naming the object and the fault,
says what was archived, touches nothing later in the chain, and a retry of the task finishes the job.
Reads of operations already running are different: past the budget they are an outage, waited out.

One emulator serves the module, ``reset()`` before each test; the operator's own hook (shared throttle,
pool sized to the workers) gets millisecond back-off so each case takes a fraction of a second.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.emulator.requestlog import RequestRecord
from airflow_provider_toloka.emulator.server import TolokaEmulator
from airflow_provider_toloka.exceptions import TolokaCascadeFailed
from airflow_provider_toloka.operators.archive import TolokaArchiveProjectOperator

MAX_RETRIES = 3  # four attempts per request, set in the connection extra as a user would
OPERATION_DURATION = 0.06  # long enough that every worker waits on the watcher at least once
POLL_INTERVAL = 0.05
MAX_CONCURRENCY = 4  # fewer workers than pools, so a failure leaves some pools not attempted
# Only a guard against a hang, so one is reported as a failure: a healthy run takes well under a second.
# (The stuck worker threads then keep the interpreter from exiting: concurrent.futures joins them.)
HANG_GUARD = 30.0

PROJECT = "7"
POOLS = [str(200 + i) for i in range(12)]
# One training linked to half the pools (it must wait for them), one linked to none.
TRAININGS = {"900": POOLS[:6], "901": []}

# name -> inject_fault() arguments, and how the give-up message names the fault.
FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "500": ({"kind": "500"}, "HTTP 500 INTERNAL_ERROR"),
    "503": ({"kind": "503"}, "HTTP 503 REMOTE_SERVICE_UNAVAILABLE"),
    "connection reset": ({"kind": "drop"}, "ConnectionError"),
    # Toloka handled the request but the answer never arrived: for a POST, the archive did start.
    "answer lost": ({"kind": "drop", "when": "after"}, "ConnectionError"),
    # Whole seconds, as HTTP allows (RFC 9110): each retry waits a real second.
    "429 + Retry-After": ({"kind": "429", "retry_after": 1}, "HTTP 429 TOO_MANY_REQUESTS"),
}
# Where a fault strikes: (path substring, method). "/operations" matches the watcher's page reads
# (GET /operations?type=...), single reads (GET /operations/{id}) and the look-up of a running archive.
TARGETS: dict[str, tuple[str, str]] = {
    "archive POSTs": ("/archive", "POST"),
    "operation reads": ("/operations", "GET"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[TolokaEmulator]:
    with TolokaEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: TolokaEmulator, monkeypatch: pytest.MonkeyPatch) -> TolokaEmulator:
    """A fresh project of 12 closed pools and 2 closed trainings; ``toloka_default`` with a small budget."""
    server.reset()
    server.operation_duration = OPERATION_DURATION
    conn = json.loads(server.airflow_conn_json())
    conn["extra"].update(max_retries=MAX_RETRIES)
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))
    server.add_project(PROJECT)
    for pool_id in POOLS:
        server.add_pool(pool_id, project_id=PROJECT)
    for training_id, linked in TRAININGS.items():
        server.add_training(training_id, project_id=PROJECT, linked_pool_ids=linked)
    return server


def run_cascade() -> dict[str, Any]:
    """One try of the task, as a new operator (a retry runs on a fresh one); fail rather than hang."""
    operator = TolokaArchiveProjectOperator(
        task_id="archive",
        project_id=PROJECT,
        cascade=True,
        max_concurrency=MAX_CONCURRENCY,
        poll_interval=POLL_INTERVAL,
    )
    # Seconds of back-off would make the matrix slow; everything else about the hook stays the operator's.
    operator.hook.retry_min_wait, operator.hook.retry_max_wait = 0.01, 0.05
    context: Any = {"ti": RecordingTI()}
    results: list[dict[str, Any] | None] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(operator.execute(context))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), f"the cascade did not finish in {HANG_GUARD:g} s: it hangs"
    if errors:
        raise errors[0]
    summary = results[0]
    assert summary is not None
    return summary


def archive_operations(emu: TolokaEmulator) -> Counter[str]:
    """How many archive operations Toloka holds per object, keyed ``pool 200``, ``training 900``, ..."""
    counts: Counter[str] = Counter()
    for kind in ("pool", "training", "project"):
        for op in emu.operations(f"{kind.upper()}.ARCHIVE"):
            counts[f"{kind} {op['parameters'][f'{kind}_id']}"] += 1
    return counts


def everything() -> list[str]:
    return [f"pool {p}" for p in POOLS] + [f"training {t}" for t in TRAININGS] + [f"project {PROJECT}"]


def status(emu: TolokaEmulator, kind: str, object_id: str) -> str:
    return str(emu.object(kind, object_id)["status"])


def faulted(emu: TolokaEmulator, path: str, method: str, kind: str) -> list[RequestRecord]:
    """Requests to ``path``/``method`` answered with fault ``kind`` (a dropped connection logs status 0)."""
    fault_status = 0 if kind == "drop" else int(kind)
    return [r for r in emu.requests if r.method == method and path in r.path and r.status == fault_status]


def posts(emu: TolokaEmulator, path: str) -> list[RequestRecord]:
    return [r for r in emu.requests if r.method == "POST" and path in r.path]


def assert_all_archived_once(emu: TolokaEmulator) -> None:
    """Everything ARCHIVED, and Toloka started exactly one archive of each object: no duplicate, none lost."""
    for name in everything():
        kind, object_id = name.split()
        assert status(emu, kind, object_id) == "ARCHIVED", name
    assert archive_operations(emu) == Counter(everything())


# -- 1. transient faults within the retry budget ------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_transient_faults_within_the_budget_archive_everything_exactly_once(
    emu: TolokaEmulator, fault_name: str, target: str
) -> None:
    """As many faults as one request may absorb: whichever requests they hit, none runs out of attempts."""
    path, method = TARGETS[target]
    fault, _ = FAULTS[fault_name]
    emu.inject_fault(count=MAX_RETRIES, path=path, method=method, **fault)

    summary = run_cascade()

    assert_all_archived_once(emu)
    # Every fault struck and was ridden out (a lost answer's retry meets a 409 for the running archive).
    assert len(faulted(emu, path, method, fault["kind"])) == MAX_RETRIES
    # An archive whose answer was lost and that had finished by the retry comes back as a 204 "skipped".
    assert sorted(summary["pools"]["archived"] + summary["pools"]["skipped"]) == sorted(POOLS)
    assert sorted(summary["trainings"]["archived"] + summary["trainings"]["skipped"]) == sorted(TRAININGS)
    assert "not_archived" not in summary


# -- 2. one pool's archive request fails past the budget -----------------------------------------


# A Retry-After waits whole seconds; giving up after one is the hook's one path, in test_fault_matrix.
OVER_BUDGET = ["500", "503", "connection reset"]


@pytest.mark.parametrize("fault_name", OVER_BUDGET)
def test_a_pool_failing_past_the_budget_stops_the_cascade_and_a_retry_finishes_it(
    emu: TolokaEmulator, fault_name: str
) -> None:
    """The failure names pool, fault and attempts, the summary is true to Toloka, and a retry continues."""
    doomed = POOLS[1]
    fault, named = FAULTS[fault_name]
    emu.inject_fault(count=MAX_RETRIES + 1, path=f"/pools/{doomed}/archive", method="POST", **fault)

    with pytest.raises(TolokaCascadeFailed) as caught:
        run_cascade()

    message, summary = str(caught.value), caught.value.summary
    assert f"could not archive pool {doomed}" in message
    assert named in message
    assert f"failed after {MAX_RETRIES + 1} attempts" in message
    assert len(posts(emu, f"/pools/{doomed}/archive")) == MAX_RETRIES + 1
    archived, not_archived = summary["pools"]["archived"], summary["not_archived"]["pools"]
    assert doomed in not_archived
    assert sorted(archived + not_archived) == sorted(POOLS)
    # The summary is what Toloka holds: archived pools are ARCHIVED, the others untouched and CLOSED.
    assert {status(emu, "pool", p) for p in archived} <= {"ARCHIVED"}
    assert {status(emu, "pool", p) for p in not_archived} == {"CLOSED"}
    # 900 waits on the doomed pool; 901 waits on none and may have gone in the first wave.
    assert "900" in summary["not_archived"]["trainings"]
    assert summary["not_archived"]["project"] == [PROJECT]
    assert posts(emu, "/trainings/900/") == []
    assert posts(emu, "/projects/") == []
    assert status(emu, "training", "900") == "CLOSED"
    assert status(emu, "project", PROJECT) == "ACTIVE"

    summary_after_retry = run_cascade()

    assert sorted(summary_after_retry["pools"]["skipped"]) == sorted(archived)
    assert sorted(summary_after_retry["pools"]["archived"]) == sorted(not_archived)
    assert_all_archived_once(emu)


# -- 3. a refusal is not retried --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "named"), [("403", "HTTP 403 ACCESS_DENIED"), ("400", "HTTP 400 VALIDATION_ERROR")]
)
def test_a_refused_pool_archive_is_sent_once_and_fails_naming_code_and_request_id(
    emu: TolokaEmulator, kind: str, named: str
) -> None:
    """Toloka would refuse again: a retry would only cost requests, so the task fails at once."""
    refused = POOLS[1]
    emu.inject_fault(kind, count=MAX_RETRIES + 1, path=f"/pools/{refused}/archive", method="POST")

    with pytest.raises(TolokaCascadeFailed) as caught:
        run_cascade()

    message = str(caught.value)
    assert f"could not archive pool {refused}" in message
    assert named in message
    assert re.search(r"request_id [0-9a-f-]{36}", message), message
    assert "attempts" not in message
    assert len(posts(emu, f"/pools/{refused}/archive")) == 1
    assert refused in caught.value.summary["not_archived"]["pools"]
    assert status(emu, "pool", refused) == "CLOSED"
    assert posts(emu, "/trainings/900/") == []
    assert posts(emu, "/projects/") == []


def test_a_training_conflict_fails_once_with_the_hint_after_every_pool_is_archived(
    emu: TolokaEmulator,
) -> None:
    """A real 409: the training is also linked to a pool of another project, which the cascade leaves be."""
    emu.add_pool("300", project_id="8")
    emu.add_training("900", project_id=PROJECT, linked_pool_ids=[*TRAININGS["900"], "300"])

    with pytest.raises(TolokaCascadeFailed) as caught:
        run_cascade()

    message, summary = str(caught.value), caught.value.summary
    assert "could not archive training 900" in message
    assert "HTTP 409 TRAINING_ARCHIVE_CONFLICT" in message
    assert re.search(r"request_id [0-9a-f-]{36}", message), message
    assert "archive the main pools linked to this training first" in message
    assert len(posts(emu, "/trainings/900/archive")) == 1
    assert sorted(summary["pools"]["archived"]) == sorted(POOLS)
    assert "900" in summary["not_archived"]["trainings"]
    assert posts(emu, "/projects/") == []
    assert status(emu, "project", PROJECT) == "ACTIVE"


# -- 4. the watcher's reads fail past the budget: an outage, waited out --------------------------------


@pytest.mark.parametrize("fault_name", OVER_BUDGET)
def test_watcher_rides_out_reads_failing_past_the_budget(
    emu: TolokaEmulator, fault_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """The archives run in Toloka whether or not the watcher can read them: an outage of its reads, twice
    the budget of one request, must not abort the waiting workers, and is logged once each way."""
    fault, _ = FAULTS[fault_name]
    outage_reads = 2 * (MAX_RETRIES + 1)
    emu.inject_fault(count=outage_reads, path="/operations", method="GET", **fault)

    run_cascade()

    assert_all_archived_once(emu)
    failed = [r for r in emu.requests if r.method == "GET" and "/operations" in r.path and r.status != 200]
    assert len(failed) == outage_reads
    output = capfd.readouterr().out
    assert output.count("Toloka cannot be read for the running operations") == 1
    assert output.count("Toloka answers again for the running operations") == 1


# -- 5. the last step, the project's own archive, fails past the budget -----------------------------


def test_the_project_wait_rides_out_reads_failing_past_the_budget(emu: TolokaEmulator) -> None:
    """Single reads: only the wait on the project's operation makes them (the watcher reads by page)."""
    emu.inject_fault("500", count=2 * (MAX_RETRIES + 1), path="/operations/", method="GET")

    summary = run_cascade()

    assert summary["project"]["operation"]["status"] == "SUCCESS"
    assert_all_archived_once(emu)


def test_the_project_step_failing_past_the_budget_fails_with_the_cascade_summary(emu: TolokaEmulator) -> None:
    """The last step is a step of the cascade too: the same error, saying every pool and training is done."""
    path, method = f"/projects/{PROJECT}/archive", "POST"
    emu.inject_fault("500", count=MAX_RETRIES + 1, path=path, method=method)

    with pytest.raises(TolokaCascadeFailed) as caught:
        run_cascade()

    message, summary = str(caught.value), caught.value.summary
    assert f"could not archive project {PROJECT}" in message
    assert f"{method} {path}" in message
    assert f"failed after {MAX_RETRIES + 1} attempts; last fault: HTTP 500 INTERNAL_ERROR" in message
    assert sorted(summary["pools"]["archived"]) == sorted(POOLS)
    assert sorted(summary["trainings"]["archived"]) == sorted(TRAININGS)
    assert summary["not_archived"] == {"pools": [], "trainings": [], "project": [PROJECT]}
    assert "Not archived: pools none; trainings none; project 7." in message

    summary_after_retry = run_cascade()

    assert sorted(summary_after_retry["pools"]["skipped"]) == sorted(POOLS)
    assert sorted(summary_after_retry["trainings"]["skipped"]) == sorted(TRAININGS)
    assert_all_archived_once(emu)
