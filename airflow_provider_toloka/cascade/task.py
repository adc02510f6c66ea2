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
    from airflow_provider_toloka.connection import TolokaConnectionSettings
    from airflow_provider_toloka.hooks.toloka import TolokaHook


def check_cascade_options(
    *,
    cascade: bool,
    close_open: bool,
    dry_run: bool,
    max_concurrency: int,
    wait_for_completion: bool,
) -> int:
    """Refuse options that do not go with ``cascade`` (before any request); return ``max_concurrency``."""
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
    return checked


def cascade_hook(
    toloka_conn_id: str,
    max_concurrency: int,
    *,
    settings: TolokaConnectionSettings | None = None,
    **terms: Any,
) -> TolokaHook:
    """A hook for the cascade's workers: one shared pace, and a connection each plus the watcher's.

    The shared pace makes a 429 slow them all down instead of each alone; the pooled connections
    mean none is opened and dropped per request. ``terms``: the operator's other hook arguments
    (``wait_out_quota``, ``deadline``).

    :param settings: the connection, already read (the triggerer reads it with the async API: a
        blocking read there can hang Airflow 3.0's triggerer, see ``compat``); ``None``: the hook reads
        it when first needed.
    """
    from airflow_provider_toloka.hooks.toloka import TolokaHook
    from airflow_provider_toloka.throttle import SharedThrottle

    hook = TolokaHook(
        toloka_conn_id=toloka_conn_id,
        throttle=SharedThrottle(),
        max_connections=max_concurrency + 1,
        **terms,
    )
    if settings is not None:
        hook.__dict__["settings"] = settings  # what the cached ``settings`` property would have read
    return hook


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

    return finish_cascade(
        lambda: archive_project_cascade(
            hook,
            project_id,
            close_open=close_open,
            dry_run=dry_run,
            max_concurrency=max_concurrency,
            poll_interval=poll_interval,
            timeout=timeout,
            log=log,
        ),
        dry_run=dry_run,
        check_again_later=check_again_later,
        push_operation_id=push_operation_id,
    )


def finish_cascade(
    outcome: Callable[[], dict[str, Any]],
    *,
    dry_run: bool,
    check_again_later: Callable[[str, Exception], None] | None,
    push_operation_id: Callable[[str], None],
) -> dict[str, Any]:
    """What the task does with a cascade's outcome, whether the worker ran it or the triggerer did.

    :param outcome: returns the summary, or raises as the cascade did (``run_cascade_task`` runs it
        here; a resumed task reads it from the trigger's event, ``outcome.summary_from_event``).
    """
    try:
        summary = outcome()
    except TolokaCascadeHeldBack as held:
        if check_again_later is not None and not dry_run:
            check_again_later(", ".join(sorted(held.codes)), held)
        raise
    operation = summary.get("project", {}).get("operation")
    if operation:
        push_operation_id(operation["id"])
    return summary
