"""Archive a whole Toloka project in one task: plan, preflight, then close and archive concurrently.

``plan`` decides what to do from the listed objects (pure), ``steps`` turns the plan into steps
with the needs Toloka's preconditions impose, ``watch`` waits on many operations with few
requests, ``execute`` runs each step as soon as its needs are done on a bounded thread pool.
``archive_project_cascade`` ties them together, and ``task`` runs that as
``TolokaArchiveProjectOperator(cascade=True)``: the options that go with it, its hook, held-back retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_toloka.cascade.execute import DEFAULT_MAX_CONCURRENCY, CascadeRunner, Log
from airflow_provider_toloka.cascade.plan import CascadePlan, check_preflight, plan_cascade

if TYPE_CHECKING:
    from airflow_provider_toloka.cascade.watch import Watcher
    from airflow_provider_toloka.hooks.toloka import TolokaHook

__all__ = ["CascadePlan", "archive_project_cascade", "plan_cascade"]


def archive_project_cascade(
    hook: TolokaHook,
    project_id: str,
    *,
    close_open: bool = False,
    dry_run: bool = False,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    poll_interval: float = 10.0,
    timeout: float | None = None,
    log: Log,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    new_watcher: Callable[[], Watcher] | None = None,
) -> dict[str, Any]:
    """List, plan, check, then (unless ``dry_run``) close and archive; return the summary or the plan.

    The one cascade: the worker runs it for ``deferrable=False``, the triggerer for ``deferrable=True``
    (``triggers/cascade.py``).

    :param timeout: seconds for the close and archive steps together (``None``: no limit).
    :param stop: set to end the run early (``CascadeRunner``'s ``stop``).
    :param clock: what ``timeout`` is counted on (the triggerer counts it from when the task deferred).
    :param new_watcher: what the workers wait on their operations with (``CascadeRunner``'s ``new_watcher``).
    """
    project = hook.get_project(project_id)
    plan = plan_cascade(
        project,
        hook.list_pools(project_id),
        hook.list_trainings(project_id),
        close_open=close_open,
    )
    log.info("%s", plan.describe())
    if dry_run:
        for blocker in plan.blockers:
            log.warning("Blocked: %s", blocker)
        log.info("Dry run: nothing was changed.")
        check_preflight(plan)
        return {"dry_run": True, "plan": plan.to_dict()}
    check_preflight(plan)
    runner = CascadeRunner(
        hook,
        max_concurrency=max_concurrency,
        poll_interval=poll_interval,
        timeout=timeout,
        log=log,
        stop=stop,
        clock=clock,
        new_watcher=new_watcher,
    )
    return runner.run(plan)
