"""Going through a whole account: list the active projects, assess each, archive the idle ones.

Projects are handled ``max_concurrency`` at a time on a thread pool that shares one hook, and so one
``SharedThrottle``: a 429 slows every project down together. Each archive is the cascade's own
``CascadeRunner``, run on the plan the assessment already made (no second listing). Together the
projects keep at most ``OPERATIONS_IN_FLIGHT`` operations running, so every one of them still fits
the single page of operations each cascade's watcher reads.

A project that fails is recorded and the others go on; the caller decides what a failure means.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import pendulum

from airflow_provider_toloka.archivable import REJECTED
from airflow_provider_toloka.assets import cascade_objects
from airflow_provider_toloka.cascade.execute import DEFAULT_MAX_CONCURRENCY, CascadeRunner, Log
from airflow_provider_toloka.exceptions import TolokaCascadeFailed, TolokaCascadeHeldBack
from airflow_provider_toloka.housekeeping.assess import REJECTION_WINDOW, assess
from airflow_provider_toloka.housekeeping.report import FAILED, ProjectOutcome, Report, id_order

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.watch import Watcher
    from airflow_provider_toloka.hooks.toloka import TolokaHook

# The cascade's benchmarked default, shared by the projects archived at once.
OPERATIONS_IN_FLIGHT = DEFAULT_MAX_CONCURRENCY

_DETAIL_CHARS = 300


def utcnow() -> pendulum.DateTime:
    """The time idle days are counted up to (tests point it at the emulator's movable clock)."""
    return pendulum.now("UTC")


def operations_per_project(max_concurrency: int) -> int:
    """Operations one project's cascade keeps in flight when ``max_concurrency`` projects run at once."""
    return max(1, OPERATIONS_IN_FLIGHT // max_concurrency)


def run_housekeeping(
    hook: TolokaHook,
    *,
    min_idle_days: float,
    close_open: bool,
    dry_run: bool,
    max_concurrency: int,
    poll_interval: float,
    log: Log,
    project_ids: list[str] | None = None,
    max_projects: int | None = None,
    on_outcome: Callable[[ProjectOutcome], None] | None = None,
    stop: threading.Event | None = None,
    new_watcher: Callable[[], Watcher] | None = None,
) -> Report:
    """Assess every active project and (unless ``dry_run``) archive the idle ones; return the report.

    ``project_ids`` limits the run to those projects (a plan a person approved); each is assessed
    again, so one that changed since is skipped with its reason. ``max_projects`` caps the projects
    archived (or attempted: held back, failed; in a dry run, those it would archive), lowest ids
    first. Projects skipped for a reason do not count against it: a project is looked at only while
    the cap, less the projects still being assessed, has room, so the ones left over wait for the
    next run, and the ones archived are the lowest eligible ids whatever the threads' timing.

    ``on_outcome`` hears each project's outcome as it comes, so a caller keeps what was archived even
    if the run is interrupted (an ``execution_timeout``) before it returns. ``stop``, once set, starts
    no further project and stops the running cascades (``CascadeRunner``'s ``stop``): the triggerer sets
    it when it cancels a deferred run. ``new_watcher`` makes each project cascade's ``Watcher``
    (``CascadeRunner``'s ``new_watcher``).
    """
    now = utcnow()
    projects = list(hook.list_projects(status="ACTIVE"))
    if project_ids is not None:
        wanted = set(project_ids)
        projects = [p for p in projects if str(p.get("id")) in wanted]
        missing = sorted(wanted - {str(p.get("id")) for p in projects})
        if missing:
            log.warning("Not among the active projects (archived or gone since?): %s", ", ".join(missing))
    projects.sort(key=lambda p: id_order(str(p.get("id"))))
    report = Report(dry_run=dry_run, min_idle_days=min_idle_days, close_open=close_open, now=now)
    log.info(
        "%d active project(s); handling up to %d at once%s%s",
        len(projects),
        max_concurrency,
        "" if max_projects is None else f", archiving at most {max_projects}",
        " (dry run: nothing will be changed)" if dry_run else "",
    )
    if not projects:
        return report
    hook.get_conn()  # threads share the hook: make its session before they start
    per_project = operations_per_project(max_concurrency)

    def handle(project: dict[str, Any]) -> tuple[ProjectOutcome, bool]:
        """The project's outcome, and whether it counts against ``max_projects`` (archive attempted)."""
        project_id = str(project.get("id"))
        if stop is not None and stop.is_set():
            return ProjectOutcome(project_id, FAILED, "not handled: the run was stopped"), False
        attempted = False
        try:
            verdict = assess(
                project,
                hook.list_pools(project_id),
                hook.list_trainings(project_id),
                close_open=close_open,
                min_idle_days=min_idle_days,
                now=now,
            )
            attempted = verdict.reason is None
            if verdict.reason is not None or dry_run:
                return ProjectOutcome(project_id, verdict.reason, verdict.detail), attempted
            runner = CascadeRunner(
                hook,
                max_concurrency=per_project,
                poll_interval=poll_interval,
                log=_ProjectLog(log, project_id),
                stop=stop,
                new_watcher=new_watcher,
            )
            done = runner.run(verdict.plan)
            archived = f"{_count(done, 'pools')} pool(s), {_count(done, 'trainings')} training(s) archived"
            outcome = ProjectOutcome(
                project_id, None, f"{verdict.detail}; {archived}", tuple(cascade_objects(done))
            )
        except TolokaCascadeHeldBack as error:
            # Pools archived before the hold-back are archived: their events are true, the project's is not.
            partial = tuple(obj for obj in cascade_objects(error.summary) if obj[0] != "project")
            outcome = ProjectOutcome(project_id, REJECTION_WINDOW, _held_back(error), partial)
        except TolokaCascadeFailed as error:
            # What it archived is seen again, already archived, when a retry plans the project anew.
            outcome = ProjectOutcome(project_id, FAILED, _short(error))
        except Exception as error:  # one project's trouble must not stop the others
            outcome = ProjectOutcome(project_id, FAILED, f"{type(error).__name__}: {_short(error)}")
        return outcome, attempted

    queue = deque(projects)
    attempted = handled = 0
    total = len(projects)
    with ThreadPoolExecutor(
        max_workers=min(max_concurrency, total), thread_name_prefix="toloka-housekeeping"
    ) as pool:
        in_flight: set[Future[tuple[ProjectOutcome, bool]]] = set()
        while True:
            # Each project in flight may still turn out to need archiving: start another only if the
            # cap has room for all of them, so a later id never takes a lower eligible id's place.
            while (
                queue
                and len(in_flight) < max_concurrency
                and (max_projects is None or attempted + len(in_flight) < max_projects)
            ):
                # In the caller's context: in the triggerer, that routes log lines to the task's log.
                in_flight.add(pool.submit(contextvars.copy_context().run, handle, queue.popleft()))
            if not in_flight:
                break
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                outcome, tried = future.result()
                attempted += tried
                report.add(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
                handled += 1
                if handled * 10 // total > (handled - 1) * 10 // total:  # every 10 %
                    log.info("projects handled %d/%d", handled, total)
    if queue:
        report.not_checked = len(queue)
        log.info(
            "max_projects=%d reached: %d project(s) not looked at, left for the next run (from %s)",
            max_projects,
            len(queue),
            queue[0].get("id"),
        )
    return report


def _held_back(error: TolokaCascadeHeldBack) -> str:
    """Why the cascade stopped: pools in the rejection window (and what waits on them) held it back.

    The cascade decides what counts as held back (``TolokaCascadeHeldBack``); its summary names each
    pool it refused (``held_back``), the first one in the rejection window.
    """
    named = ", ".join(f"pool {pool_id}" for pool_id in error.summary.get("held_back") or {}) or "a pool"
    return (
        f"{named}: 409 {REJECTED}, archivable 9 days after its last rejection; "
        f"{_count(error.summary, 'pools')} other pool(s) archived meanwhile, the rest waits for a later run"
    )


def _count(summary: dict[str, Any], kind: str) -> int:
    return len((summary.get(kind) or {}).get("archived") or [])


def _short(error: BaseException) -> str:
    """The first line of an error, cut to a size that keeps the XCom small for thousands of projects."""
    first = (str(error).strip().splitlines() or [""])[0]
    return first if len(first) <= _DETAIL_CHARS else first[: _DETAIL_CHARS - 3] + "..."


class _ProjectLog:
    """The task log, with each cascade line saying which project it is about."""

    def __init__(self, log: Log, project_id: str) -> None:
        self._log = log
        self._prefix = f"project {project_id}: "

    def info(self, event: Any, *args: Any, **kw: Any) -> Any:
        return self._log.info(self._prefix + str(event), *args, **kw)

    def warning(self, event: Any, *args: Any, **kw: Any) -> Any:
        return self._log.warning(self._prefix + str(event), *args, **kw)
