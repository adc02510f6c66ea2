"""The cascade as one Airflow task: what ``TolokaArchiveProjectOperator(cascade=True)`` runs.

The operator keeps the one-object archive (its resumable path); everything the cascade adds to it
lives here: which options go together, a hook whose workers share one pace, and a run that bypasses
the resumable path (the cascade waits on many operations, not one job id) yet still checks again
later when ``wait_until_archivable`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_toloka.cascade.execute import MAX_CONCURRENCY, Log
from airflow_provider_toloka.exceptions import TolokaCascadeHeldBack
from airflow_provider_toloka.validation import validate_count

if TYPE_CHECKING:
    from airflow_provider_toloka.hooks.toloka import TolokaHook


def check_cascade_options(
    *,
    cascade: bool,
    close_open: bool,
    dry_run: bool,
    max_concurrency: int,
    wait_for_completion: bool,
    deferrable: object,
) -> int:
    """Refuse options that do not go with ``cascade`` (before any request); return ``max_concurrency``.

    :param deferrable: the value the DAG passed explicitly (``None`` if it did not): one that comes
        from ``[operators] default_deferrable`` is not refused, only ignored.
    """
    checked = validate_count(
        "max_concurrency",
        max_concurrency,
        minimum=1,
        maximum=MAX_CONCURRENCY,
        why_maximum=", so the operations in flight fit one page of Toloka's operation list",
    )
    for name, value in (("close_open", close_open), ("dry_run", dry_run)):
        if value and not cascade:
            raise ValueError(f"{name}=True needs cascade=True: pass cascade=True, or drop {name}.")
    if cascade and not wait_for_completion:
        raise ValueError(
            "wait_for_completion=False does not go with cascade=True: the project can only be "
            "archived after its pools' archives finish. Drop one of them."
        )
    if cascade and deferrable:
        raise ValueError(
            "deferrable=True does not go with cascade=True: the cascade waits on many operations "
            "from the worker, between requests that depend on them, and cannot hand that to the "
            "triggerer. Drop deferrable (bound the run with timeout), or archive without cascade."
        )
    return checked


def cascade_hook(toloka_conn_id: str, max_concurrency: int, **terms: Any) -> TolokaHook:
    """A hook for the cascade's workers: one shared pace, and a connection each plus the watcher's.

    The shared pace makes a 429 slow them all down instead of each alone; the pooled connections
    mean none is opened and dropped per request. ``terms``: the operator's other hook arguments
    (``wait_out_quota``, ``deadline``).
    """
    from airflow_provider_toloka.hooks.toloka import TolokaHook
    from airflow_provider_toloka.throttle import SharedThrottle

    return TolokaHook(
        toloka_conn_id=toloka_conn_id,
        throttle=SharedThrottle(),
        max_connections=max_concurrency + 1,
        **terms,
    )


def run_cascade_task(
    hook: TolokaHook,
    project_id: str,
    *,
    close_open: bool,
    dry_run: bool,
    max_concurrency: int,
    poll_interval: float,
    timeout: float | None,
    log: Log,
    check_again_later: Callable[[str, Exception], None] | None,
    push_operation_id: Callable[[str], None],
) -> dict[str, Any]:
    """Run the cascade; return its summary (or plan), and push the project's operation id to XCom.

    :param check_again_later: when set, called (and expected to defer, which raises) if the cascade
        is held back by refusals that time clears; the next check re-plans and continues, since
        archived objects are skipped and archive is idempotent. Never for a dry run.
    """
    # Looked up at call time, through the package: tests stand in for it there.
    from airflow_provider_toloka.cascade import archive_project_cascade

    try:
        summary = archive_project_cascade(
            hook,
            project_id,
            close_open=close_open,
            dry_run=dry_run,
            max_concurrency=max_concurrency,
            poll_interval=poll_interval,
            timeout=timeout,
            log=log,
        )
    except TolokaCascadeHeldBack as held:
        if check_again_later is not None and not dry_run:
            check_again_later(", ".join(sorted(held.codes)), held)
        raise
    operation = summary.get("project", {}).get("operation")
    if operation:
        push_operation_id(operation["id"])
    return summary
