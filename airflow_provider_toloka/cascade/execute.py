"""Carrying out a cascade plan: each close and archive starts as soon as what it needs is done.

The plan becomes steps with needs, as Toloka's preconditions chain them (``steps``): an archive
needs its object closed, a training's archive needs the main pools linked to it archived, the
project's archive needs everything. The main loop hands every step whose needs are met to a
bounded thread pool; a worker sends one close or archive and waits for its operation through the
run's ``watch.Watcher``: the task's ``OperationWatcher`` in the worker, the event loop's shared reader
in the triggerer. So at most ``max_concurrency`` operations are in flight,
and a training starts as soon as its own pools finish instead of after every pool (under a pace, once
no pool is left to send: ``CascadeRunner._goes_last``, and its request only once no close or pool
archive handed to a worker still waits for its answer: ``CascadeRunner._wait_for_first_steps``).

A refusal that time clears (a pool in its rejection window) holds back only what needs that pool;
the rest goes on. Any other failure stops new work and what is in flight is waited for. Either
way the task then fails with what was archived and what was not. Archive is idempotent, so a
retry plans again and continues.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_toloka.archivable import REJECTED, time_clears
from airflow_provider_toloka.cascade.steps import Step, build_steps
from airflow_provider_toloka.cascade.watch import OperationWatcher, Watcher
from airflow_provider_toloka.exceptions import TolokaApiError, TolokaCascadeFailed, TolokaCascadeHeldBack
from airflow_provider_toloka.hooks.answer import PAGE_LIMIT
from airflow_provider_toloka.operation_status import OperationStatus, describe, operation_status
from airflow_provider_toloka.throttle import SharedThrottle

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.plan import CascadePlan
    from airflow_provider_toloka.hooks.toloka import TolokaHook

# Chosen with benchmarks/bench_cascade.py (it prints the candidates side by side); waiting threads
# are cheap (they block on an event, not on HTTP).
DEFAULT_MAX_CONCURRENCY = 128
# The watcher reads operations one page at a time; more in flight would fall back to one read each.
MAX_CONCURRENCY = PAGE_LIMIT
DONE, SKIPPED = "done", "skipped"
_SHOWN_IDS = 20
# Toloka keeps a pool with rejected assignments for 9 days so Tolokers can appeal.
REJECTION_WINDOW_DAYS = 9
_PROGRESS_ORDER = [
    ("close", "pool"), ("close", "training"), ("archive", "pool"), ("archive", "training"),
    ("archive", "project"),
]  # fmt: skip


class Log(Protocol):
    """The part of a logger the cascade uses (Airflow's task logger is not a ``logging.Logger``)."""

    def info(self, event: Any, *args: Any, **kw: Any) -> Any: ...

    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


class Progress:
    """``pools archived 120/1000; trainings archived 3/50`` lines: at every 10 % of all steps, and
    whenever ``every`` seconds pass without one (the main loop calls ``tick`` while it waits), so a
    long operation never leaves the log silent."""

    def __init__(
        self,
        log: Log,
        totals: dict[str, int],
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.every, self.clock = log, every, clock
        self.totals = {label: total for label, total in totals.items() if total}
        self.counts = dict.fromkeys(self.totals, 0)
        self._all = max(sum(self.totals.values()), 1)
        self._logged_at = clock()
        self._next_step = 1

    def advance(self, label: str) -> None:
        self.counts[label] += 1
        step = sum(self.counts.values()) * 10 // self._all
        if step >= self._next_step or self.counts[label] == self.totals[label]:
            self._next_step = step + 1
            self._log()

    def tick(self) -> None:
        if self.seconds_until_due() == 0:
            self._log()

    def seconds_until_due(self) -> float:
        return max(0.0, self._logged_at + self.every - self.clock())

    def _log(self) -> None:
        line = "; ".join(f"{label} {self.counts[label]}/{total}" for label, total in self.totals.items())
        self.log.info("%s", line)
        self._logged_at = self.clock()


class CascadeTimedOut(Exception):
    """Wakes the workers still waiting when the cascade's ``timeout`` passes."""


class CascadeStopped(Exception):
    """Wakes the workers still waiting when the run is told to stop (its trigger was cancelled)."""


class CascadeRunner:
    """Runs one plan against Toloka through ``hook`` (give it a ``SharedThrottle``).

    :param max_concurrency: operations in flight at once (requests sent and not yet finished).
    :param poll_interval: longest pause between polls of running operations.
    :param timeout: seconds for the whole cascade; when they pass, no new step starts, the workers
        stop waiting, and the task fails naming what is done and what is left. ``None``: no limit.
    :param progress_every: longest silence, in seconds, between progress lines.
    :param stop: once set, no new step starts and the workers stop waiting (what was sent keeps running
        in Toloka): how the triggerer ends a cascade whose trigger it cancelled, since a thread cannot
        be cancelled from outside. ``None``: the run is never told to stop.
    :param new_watcher: makes what the run's workers wait on their operations with; ``None``: an
        ``OperationWatcher`` on ``hook`` (the worker's). The triggerer passes one that waits through its
        event loop's shared reader (``triggers/engine_watcher.py``).
    """

    def __init__(
        self,
        hook: TolokaHook,
        *,
        max_concurrency: int,
        poll_interval: float,
        log: Log,
        timeout: float | None = None,
        progress_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
        new_watcher: Callable[[], Watcher] | None = None,
    ) -> None:
        self.hook = hook
        self.stop = stop
        self.new_watcher = new_watcher
        self.max_concurrency = max_concurrency
        self.poll_interval = poll_interval
        self.log = log
        self.timeout = timeout
        self.progress_every = progress_every
        self.clock = clock
        self.summary: dict[str, Any] = {
            kind: {"archived": [], "closed": [], "skipped": []} for kind in ("pools", "trainings")
        }
        self.summary["project"] = {"id": None, "operation": None, "skipped": False}
        # "pool 12": its archive's operation id, for the asset events (none for a 204).
        self.summary["operations"] = {}
        self._results: dict[Step, str] = {}
        self._errors: dict[Step, BaseException] = {}
        self._timed_out = False
        self._deadline: float | None = None
        self._sent: set[Step] = set()  # steps whose request has gone out (added from worker threads)
        # Closes and pool archives handed to a worker whose request has not been answered yet: under a
        # pace a training's or the project's archive waits for none to be left (``_wait_for_first_steps``).
        self._first_unsent = 0
        self._first_sent = threading.Condition()

    def run(self, plan: CascadePlan) -> dict[str, Any]:
        self.summary["project"]["id"] = plan.project_id
        self.summary["project"]["skipped"] = plan.project_archived
        for kind, kind_plan in (("pool", plan.pools), ("training", plan.trainings)):
            self.summary[f"{kind}s"]["skipped"].extend(kind_plan.skip)
        if plan.project_archived:
            self.log.info("Project %s is already archived.", plan.project_id)
        needs = build_steps(plan)
        if needs:
            # Threads share the hook: build its lazily made connection and session before they start.
            self.hook.get_conn()
            self._schedule(needs)
        for kind, kind_plan in (("pool", plan.pools), ("training", plan.trainings)):
            for action, ids, key in (
                ("close", kind_plan.close, "closed"),
                ("archive", kind_plan.archive, "archived"),
            ):
                for object_id in ids:  # in the plan's (id) order, not the order they finished
                    result = self._results.get(Step(action, kind, object_id))
                    if result == DONE:
                        self.summary[f"{kind}s"][key].append(object_id)
                    elif result == SKIPPED and action == "archive":  # a close that found it closed is no news
                        self.summary[f"{kind}s"]["skipped"].append(object_id)
        if self._errors or len(self._results) < len(needs):
            raise self._failed(plan, needs)
        return self.summary

    def _schedule(self, needs: dict[Step, set[Step]]) -> None:
        """Run every step once its needs are done, at most ``max_concurrency`` at a time."""
        waiting_on = {step: set(required) for step, required in needs.items()}
        needed_by: dict[Step, list[Step]] = {step: [] for step in needs}
        for step, required in needs.items():
            for other in required:
                needed_by[other].append(step)
        free = [step for step, required in needs.items() if not required]
        ready = deque(step for step in free if not self._goes_last(step))
        last = deque(step for step in free if self._goes_last(step))  # sent when no other step is ready
        labels = [Step(a, k, "").label for a, k in _PROGRESS_ORDER]
        totals = {label: sum(1 for step in needs if step.label == label) for label in labels}
        progress = Progress(self.log, totals, self.progress_every, self.clock)
        watcher = (
            self.new_watcher()
            if self.new_watcher is not None
            else OperationWatcher(self.hook, max_interval=self.poll_interval)
        )
        deadline = self._deadline = None if self.timeout is None else self.clock() + self.timeout
        stopped = False
        self.log.info("Running %d step(s) with up to %d in flight", len(needs), self.max_concurrency)
        in_flight: dict[Future[tuple[str, dict[str, Any] | None]], Step] = {}
        with ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(needs)), thread_name_prefix="toloka-cascade"
        ) as pool:
            while True:
                while (ready or last) and not stopped and len(in_flight) < self.max_concurrency:
                    step = ready.popleft() if ready else last.popleft()
                    if not _follows_pools(step):
                        with self._first_sent:
                            self._first_unsent += 1
                    # In the caller's context: in the triggerer, that routes log lines to the task's log.
                    in_flight[pool.submit(contextvars.copy_context().run, self._one, step, watcher)] = step
                if not in_flight:
                    break
                watcher.set_busy(self._paced() and self._unsent(ready, last, in_flight.values()))
                try:
                    watcher.poll()
                except Exception as error:
                    stopped = True
                    watcher.abort(error)
                if deadline is not None and self.clock() >= deadline:
                    # Again on every turn: a worker whose request was still out registers after.
                    self._timed_out = stopped = True
                    watcher.abort(CascadeTimedOut(f"the cascade's timeout of {self.timeout:g} s passed"))
                if self.stop is not None and self.stop.is_set():
                    stopped = True
                    watcher.abort(CascadeStopped("the cascade was stopped (its trigger was cancelled)"))
                progress.tick()
                pause = min(watcher.seconds_until_due(), progress.seconds_until_due())
                if deadline is not None and not self._timed_out:
                    pause = min(pause, max(0.0, deadline - self.clock()))
                done, _ = wait(in_flight, timeout=pause, return_when=FIRST_COMPLETED)
                for future in done:
                    step = in_flight.pop(future)
                    try:
                        result, operation = future.result()
                    except Exception as error:
                        self._errors[step] = error
                        stopped = stopped or not _time_clears(error)
                        continue
                    self._results[step] = result
                    if operation is not None and step.action == "archive":
                        self.summary["operations"][f"{step.kind} {step.id}"] = operation.get("id")
                    if step.kind == "project":
                        self.summary["project"]["operation"] = operation
                    progress.advance(step.label)
                    # What this step unblocks goes first (a training frees the project sooner), unless
                    # the task keeps to a pace: see ``_goes_last``.
                    for later in reversed(needed_by[step]):
                        waiting_on[later].discard(step)
                        if not waiting_on[later]:
                            (last.append if self._goes_last(later) else ready.appendleft)(later)

    def _unsent(self, *queues: Iterable[Step]) -> bool:
        """Whether a request still waits for its turn: a step not yet started, or started and queued
        for the pace (its worker has not sent it yet)."""
        return any(step not in self._sent and not self._goes_last(step) for queue in queues for step in queue)

    def _one(self, step: Step, watcher: Watcher) -> tuple[str, dict[str, Any] | None]:
        if _follows_pools(step):
            self._wait_for_first_steps()
            operation = self._send(step)
        else:
            try:
                operation = self._send(step)
            finally:
                with self._first_sent:
                    self._first_unsent -= 1
                    self._first_sent.notify_all()
        self._sent.add(step)
        if operation is None:
            return SKIPPED, None  # already archived (or closed), e.g. Toloka auto-archived an idle pool
        if step.kind == "project":
            self.log.info("Archive of project %s submitted: %s", step.id, describe(operation))
        if not operation_status(operation).is_terminal:
            operation = watcher.wait(operation)
        if operation_status(operation) is OperationStatus.FAIL:
            raise self.hook.operation_failed(operation)
        return DONE, operation

    def _send(self, step: Step) -> dict[str, Any] | None:
        if step.action == "archive":
            return self.hook.archive(step.kind, step.id)  # type: ignore[arg-type]
        if step.kind == "pool":
            return self.hook.close_pool(step.id)
        return self.hook.close_training(step.id)

    def _wait_for_first_steps(self) -> None:
        """Under a pace, hold a training's or the project's archive until no close or pool archive handed
        to a worker still waits for its answer.

        The main loop hands these archives out only once no other step is ready (``_goes_last``), but the
        last pool's worker and a training's can reach the pace in either order: which thread the CPU runs
        first decides. Waiting here makes "after every pool" hold on a busy machine too. It costs the
        training nothing: its turn would come after those pools' turns anyway. A close or pool archive
        handed out later (one freed by a close that finished) is waited for as well if it comes first.
        """
        if not self._paced():
            return
        with self._first_sent:
            self._first_sent.wait_for(lambda: self._first_unsent == 0)

    def _goes_last(self, step: Step) -> bool:
        """Whether a free step waits behind every other ready one: a training's or the project's
        archive while the task keeps to a pace (declared ``requests_per_second``, or learned from a 429).

        Under a pace only one chain sets the end: the last pool, then its training, then the project.
        Any other training's archive sent while pools are left pushes that last pool back by one
        request; sent after the last pool, it rides in the time that pool's operation takes anyway,
        when the pace has requests to spare. Without a pace a request costs no one a turn, so each
        training starts the moment its pools are done.
        """
        return _follows_pools(step) and self._paced()

    def _paced(self) -> bool:
        """Whether the task keeps to a pace, declared or learned from a 429 (so a request takes a turn)."""
        throttle = self.hook.throttle
        return isinstance(throttle, SharedThrottle) and throttle.rate is not None

    def _failed(self, plan: CascadePlan, needs: dict[Step, set[Step]]) -> TolokaCascadeFailed:
        def left(kind: str, ids: list[str]) -> list[str]:  # in the plan's (id) order
            return [
                i
                for i in ids
                if Step("archive", kind, i) in needs and Step("archive", kind, i) not in self._results
            ]

        not_archived = {
            "pools": left("pool", plan.pools.archive),
            "trainings": left("training", plan.trainings.archive),
            "project": left("project", [plan.project_id]),
        }
        summary = {**self.summary, "not_archived": not_archived}
        summary["errors"] = {f"{step.kind} {step.id}": str(error) for step, error in self._errors.items()}
        held = not self._timed_out and all(_time_clears(error) for error in self._errors.values())
        held = held and any(_code(error) == REJECTED for error in self._errors.values())
        done_lines = [
            f"Archived: pools {_ids(self.summary['pools']['archived'])}; "
            f"trainings {_ids(self.summary['trainings']['archived'])}.",
            f"Not archived: pools {_ids(not_archived['pools'])}; "
            f"trainings {_ids(not_archived['trainings'])}; "
            f"project {', '.join(not_archived['project']) or 'archived'}.",
        ]
        if held:
            codes = {code for code in map(_code, self._errors.values()) if code}
            summary["held_back"] = {
                step.id: plan.training_of.get(step.id) for step in self._errors if step.kind == "pool"
            }
            return TolokaCascadeHeldBack(self._held_message(plan, done_lines), summary, codes)
        if self._timed_out:
            first = (
                f"Cascade archive of project {plan.project_id} did not finish within timeout="
                f"{self.timeout:g} s."
            )
            last = (
                "Operations already started keep running in Toloka. Retry the task (or raise timeout): "
                "what is archived is skipped, and running archives are waited on."
            )
        else:
            # The failure that stopped the run comes first, not a refusal that only time clears.
            first_step, first_error = min(self._errors.items(), key=lambda item: _time_clears(item[1]))
            more = f" (and {len(self._errors) - 1} more failure(s))" if len(self._errors) > 1 else ""
            first = (
                f"Cascade archive of project {plan.project_id} stopped: could not {first_step.action} "
                f"{first_step.kind} {first_step.id}: {first_error}{more}"
            )
            last = "Fix the cause and retry the task: what is archived is skipped, the rest continues."
        return TolokaCascadeFailed("\n".join([first, *done_lines, last]), summary)

    def _held_message(self, plan: CascadePlan, done_lines: list[str]) -> str:
        lines = [
            f"Cascade archive of project {plan.project_id} archived everything it could; Toloka's "
            "rejection window holds back the rest:"
        ]
        for step, error in self._errors.items():
            request_id = getattr(error, "request_id", None)
            code = f"{_code(error)}" + (f", request_id {request_id}" if request_id else "")
            if step.kind == "pool":
                training = plan.training_of.get(step.id)
                left = (f"training {training} and " if training else "") + f"project {plan.project_id}"
                lines.append(f"  - pool {step.id} ({code}): left with it: {left}")
            else:
                lines.append(f"  - {step.kind} {step.id} ({code}): waits on the pools above")
        lines += done_lines
        lines.append(
            f"Toloka keeps a pool with rejected assignments for {REJECTION_WINDOW_DAYS} days after its last "
            "rejection, for appeals. A retry after that window finishes the job: what is archived is "
            "skipped, the rest is archived."
        )
        return "\n".join(lines)


def _follows_pools(step: Step) -> bool:
    """A training's or the project's archive: under a pace it goes after the pools (``_goes_last``)."""
    return step.action == "archive" and step.kind != "pool"


def _code(error: BaseException) -> str | None:
    return error.code if isinstance(error, TolokaApiError) else None


def _time_clears(error: BaseException) -> bool:
    """A refusal that only waiting cures (``archivable.time_clears``), read off any exception."""
    return isinstance(error, TolokaApiError) and time_clears(error.status_code, error.code)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return f"{len(ids)} ({shown}{more})" if ids else "none"
