"""Carrying out a cascade plan: close, archive pools, archive trainings, archive the project.

Each phase runs its requests on a bounded thread pool: a worker sends one close or archive and
waits (through the shared ``OperationWatcher``) for its operation, so at most ``max_concurrency``
operations are in flight. Phases follow each other because Toloka's preconditions chain: a
training needs its pools archived, the project needs everything archived.

The first failure stops new work; what is in flight is waited for; then the task fails with what
was archived and what was not. Archive is idempotent, so a retry plans again and continues.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_toloka.cascade.watch import OperationWatcher
from airflow_provider_toloka.exceptions import TolokaCascadeFailed
from airflow_provider_toloka.operation import OperationStatus, describe, operation_status

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.plan import CascadePlan
    from airflow_provider_toloka.hooks.toloka import TolokaHook

DONE, SKIPPED, NOT_ATTEMPTED = "done", "skipped", "not attempted"
_SHOWN_IDS = 20


class Log(Protocol):
    """The part of a logger the cascade uses (Airflow's task logger is not a ``logging.Logger``)."""

    def info(self, event: Any, *args: Any, **kw: Any) -> Any: ...

    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


class Progress:
    """``pools archived 120/1000`` lines: at every 10 % step, or every 10 s, whichever comes first."""

    def __init__(self, log: Log, label: str, total: int, every: float = 10.0) -> None:
        self.log, self.label, self.total, self.every = log, label, total, every
        self.count = 0
        self._logged_at = time.monotonic()
        self._next_step = 1

    def advance(self) -> None:
        self.count += 1
        now = time.monotonic()
        step = self.count * 10 // max(self.total, 1)
        if step >= self._next_step or now - self._logged_at >= self.every or self.count == self.total:
            self.log.info("%s %d/%d", self.label, self.count, self.total)
            self._logged_at, self._next_step = now, step + 1


class CascadeRunner:
    """Runs one plan against Toloka through ``hook`` (give it a ``SharedThrottle``).

    :param max_concurrency: operations in flight at once (requests sent and not yet finished).
    :param poll_interval: longest pause between polls of running operations.
    """

    def __init__(self, hook: TolokaHook, *, max_concurrency: int, poll_interval: float, log: Log) -> None:
        self.hook = hook
        self.max_concurrency = max_concurrency
        self.poll_interval = poll_interval
        self.log = log
        self.summary: dict[str, Any] = {
            kind: {"archived": [], "closed": [], "skipped": []} for kind in ("pools", "trainings")
        }
        self.summary["project"] = {"id": None, "operation": None, "skipped": False}

    def run(self, plan: CascadePlan) -> dict[str, Any]:
        self.summary["project"]["id"] = plan.project_id
        for kind, plan_kind in (("pool", plan.pools), ("training", plan.trainings)):
            self.summary[f"{kind}s"]["skipped"].extend(plan_kind.skip)
        # Threads share the hook: build its lazily made connection and session before they start.
        self.hook.get_conn()
        steps = [
            ("close", "pool", plan.pools.close),
            ("close", "training", plan.trainings.close),
            ("archive", "pool", plan.pools.archive),
            ("archive", "training", plan.trainings.archive),
        ]
        for index, (action, kind, ids) in enumerate(steps):
            if ids:
                self._run_phase(action, kind, ids, later=steps[index + 1 :], plan=plan)
        try:
            self._archive_project(plan)
        except Exception as error:  # the last step fails like the others: with what is archived
            raise self._failed("project", "archive", [], {}, {plan.project_id: error}, [], plan) from error
        return self.summary

    def _run_phase(
        self,
        action: str,
        kind: str,
        ids: list[str],
        *,
        later: list[tuple[str, str, list[str]]],
        plan: CascadePlan,
    ) -> None:
        start = self.hook.archive if action == "archive" else self._close
        watcher = OperationWatcher(self.hook, max_interval=self.poll_interval)
        stop = threading.Event()
        progress = Progress(self.log, f"{kind}s {action}d", len(ids))
        results: dict[str, str] = {}
        errors: dict[str, BaseException] = {}
        self.log.info(
            "%s %d %s(s) with up to %d in flight", action.capitalize(), len(ids), kind, self.max_concurrency
        )
        workers = min(self.max_concurrency, len(ids))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"toloka-{action}") as pool:
            futures: dict[Future[str], str] = {
                pool.submit(self._one, start, kind, object_id, watcher, stop): object_id for object_id in ids
            }
            pending = set(futures)
            while pending:
                try:
                    watcher.poll()
                except Exception as error:
                    stop.set()
                    watcher.abort(error)
                done, pending = wait(
                    pending, timeout=watcher.seconds_until_due(), return_when=FIRST_COMPLETED
                )
                for future in done:
                    object_id = futures[future]
                    try:
                        results[object_id] = future.result()
                    except Exception as error:
                        errors[object_id] = error
                        stop.set()
                        continue
                    if results[object_id] != NOT_ATTEMPTED:
                        progress.advance()
        key = "archived" if action == "archive" else "closed"
        for object_id in ids:
            if results.get(object_id) == DONE:
                self.summary[f"{kind}s"][key].append(object_id)
            elif results.get(object_id) == SKIPPED and action == "archive":
                self.summary[f"{kind}s"]["skipped"].append(object_id)
        if errors:
            raise self._failed(kind, action, ids, results, errors, later, plan)

    def _one(
        self,
        start: Callable[..., dict[str, Any] | None],
        kind: str,
        object_id: str,
        watcher: OperationWatcher,
        stop: threading.Event,
    ) -> str:
        if stop.is_set():
            return NOT_ATTEMPTED
        operation = start(kind, object_id)
        if operation is None:
            return SKIPPED  # already archived (or closed), e.g. Toloka auto-archived an idle pool
        if not operation_status(operation).is_terminal:
            operation = watcher.wait(operation)
        if operation_status(operation) is OperationStatus.FAIL:
            raise self.hook.operation_failed(operation)
        return DONE

    def _close(self, kind: str, object_id: str) -> dict[str, Any] | None:
        return self.hook.close_pool(object_id) if kind == "pool" else self.hook.close_training(object_id)

    def _archive_project(self, plan: CascadePlan) -> None:
        operation = None if plan.project_archived else self.hook.archive_project(plan.project_id)
        if operation is None:
            self.summary["project"]["skipped"] = True
            self.log.info("Project %s is already archived.", plan.project_id)
            return
        self.log.info("Archive of project %s submitted: %s", plan.project_id, describe(operation))
        if operation_status(operation) is OperationStatus.FAIL:
            raise self.hook.operation_failed(operation)
        if not operation_status(operation).is_terminal:
            operation = self.hook.wait_for_operation(operation["id"], poll_interval=self.poll_interval)
        self.summary["project"]["operation"] = operation

    def _failed(
        self,
        kind: str,
        action: str,
        ids: list[str],
        results: dict[str, str],
        errors: dict[str, BaseException],
        later: list[tuple[str, str, list[str]]],
        plan: CascadePlan,
    ) -> TolokaCascadeFailed:
        not_done: dict[str, list[str]] = {"pools": [], "trainings": []}
        if kind != "project":
            not_done[f"{kind}s"] = [i for i in ids if results.get(i) not in (DONE, SKIPPED)]
        for _, later_kind, later_ids in later:
            not_done[f"{later_kind}s"].extend(i for i in later_ids if i not in not_done[f"{later_kind}s"])
        summary = {**self.summary, "not_archived": {**not_done, "project": [plan.project_id]}}
        summary["errors"] = {f"{kind} {i}": str(error) for i, error in errors.items()}
        first_id, first_error = next(iter(errors.items()))
        lines = [
            f"Cascade archive of project {plan.project_id} stopped: could not {action} {kind} {first_id}: "
            f"{first_error}" + (f" (and {len(errors) - 1} more failure(s))" if len(errors) > 1 else ""),
            f"Archived: pools {_ids(self.summary['pools']['archived'])}; "
            f"trainings {_ids(self.summary['trainings']['archived'])}.",
            f"Not archived: pools {_ids(not_done['pools'])}; trainings {_ids(not_done['trainings'])}; "
            f"project {plan.project_id}.",
            "Fix the cause and retry the task: what is archived is skipped, the rest continues.",
        ]
        return TolokaCascadeFailed("\n".join(lines), summary)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return f"{len(ids)} ({shown}{more})" if ids else "none"
