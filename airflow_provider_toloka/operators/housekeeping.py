"""Housekeeping for a whole Toloka account: archive every project that has been idle long enough.

Toloka archives idle pools on its own but never projects, so an account fills up with finished
ones. Scheduled daily, this task keeps it tidy (see ``docs/housekeeping.md``). The work itself lives
in ``airflow_provider_toloka.housekeeping``, imported when the task runs, so parsing the DAG costs
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_toloka.assets import add_archive_alias, record_archived
from airflow_provider_toloka.quota import task_deadline, validate_wait_out_quota
from airflow_provider_toloka.validation import validate_count, validate_id, validate_seconds

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_toloka.hooks.toloka import TolokaHook
    from airflow_provider_toloka.housekeeping import Report

DEFAULT_MAX_CONCURRENCY = 8
# Projects handled at once; each of them gets an even share of the cascade's operations in flight.
MAX_CONCURRENCY = 64


class TolokaHousekeepingOperator(BaseOperator):
    """Archive each active project whose pools and trainings have all been idle ``min_idle_days``.

    Lists the account's active projects, plans each with the cascade's planner and archives it
    (pools, trainings, project) when nothing in it is open and nothing has stopped, started or been
    made for ``min_idle_days``. Every other project is skipped with its reason: ``open`` (open pools
    or trainings), ``blocked`` (locked ones), ``recent_activity`` (with the date it becomes
    eligible), ``rejection_window`` (a pool Toloka refuses to archive for 9 days after a rejection:
    only the real run can meet it), ``unknown_activity`` (no times shown).

    The summary is the task's return value (XCom): ids of the projects archived, and per skip reason
    and for failures ``{project id: why}``. The same summary is logged as a table. A project that
    fails does not stop the others; the task then fails at the end, naming them, with the summary
    still in XCom. Skipped projects, the rejection window included, are not failures: tomorrow's
    run tries again.

    :param min_idle_days: days since the project's last activity (the newest ``last_stopped``,
        ``last_started`` or ``created`` of its pools and trainings) before it is archived; 0 or more.
    :param close_open: close open pools and trainings of idle projects instead of skipping them. An
        open pool counts as active since it was last opened.
    :param dry_run: change nothing: log and return the same summary, listing the projects a real run
        would archive under ``archived``.
    :param max_concurrency: projects handled at once (1-64). All requests share one pace: a 429
        slows every project down together.
    :param poll_interval: longest pause between polls of running archives, in seconds.
    :param toloka_conn_id: Airflow connection of type ``toloka`` (templated).
    :param wait_out_quota: when Toloka answers 429 for an HOUR or DAY quota, wait for it to reset if
        that falls before the task's ``execution_timeout``, instead of failing those requests at once.
    :param project_ids: handle only these projects (e.g. the ``archived`` list of an approved dry run);
        each is assessed again, so one that changed since is skipped with its reason. Templated.
    :param max_projects: handle at most this many projects per run (lowest ids first); the rest wait
        for the next run.
    :param deferrable: run the whole pass (listing, assessing, archiving, waiting) in the triggerer
        (``TolokaHousekeepingTrigger``), so the task holds no worker slot meanwhile: the worker checks
        the arguments, defers, and resumes only to record the report. Default:
        ``[operators] default_deferrable``.

    Every archived object (pools, trainings, project) gets an event of its ``toloka://`` asset through
    the ``toloka_archive`` alias (see ``docs/assets.md``); a dry run records none.
    """

    template_fields: Sequence[str] = ("toloka_conn_id", "project_ids")
    ui_color = "#d7e9f7"

    def __init__(
        self,
        *,
        min_idle_days: float = 30,
        close_open: bool = False,
        dry_run: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        poll_interval: float = 10.0,
        toloka_conn_id: str = "toloka_default",
        project_ids: Sequence[str | int] | str | None = None,
        max_projects: int | None = None,
        wait_out_quota: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        add_archive_alias(self)
        self.deferrable = deferrable
        self.project_ids = project_ids
        self.max_projects = (
            None if max_projects is None else validate_count("max_projects", max_projects, minimum=1)
        )
        self.min_idle_days = _validate_days("min_idle_days", min_idle_days)
        self.close_open = close_open
        # Not ``self.dry_run``: BaseOperator has a ``dry_run()`` method.
        self.plan_only = dry_run
        self.max_concurrency = validate_count(
            "max_concurrency",
            max_concurrency,
            minimum=1,
            maximum=MAX_CONCURRENCY,
            why_maximum="; more projects at once only share the same request pace and operations in flight",
        )
        self.poll_interval = validate_seconds("poll_interval", poll_interval)
        self.toloka_conn_id = toloka_conn_id
        self.wait_out_quota = validate_wait_out_quota(wait_out_quota)

    @cached_property
    def hook(self) -> TolokaHook:
        from airflow_provider_toloka.cascade.task import cascade_hook
        from airflow_provider_toloka.housekeeping.run import operations_per_project

        # The cascade's hook, sized for every project's threads: one pace, a connection for each sender.
        threads = self.max_concurrency * (operations_per_project(self.max_concurrency) + 1)
        return cascade_hook(
            self.toloka_conn_id,
            threads,
            wait_out_quota=self.wait_out_quota,
            deadline=task_deadline(self.execution_timeout),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_toloka.housekeeping import run_housekeeping

        project_ids = _validate_project_ids(self.project_ids)
        if self.deferrable:
            self._defer(project_ids)
        report = run_housekeeping(
            self.hook,
            min_idle_days=self.min_idle_days,
            close_open=self.close_open,
            dry_run=self.plan_only,
            max_concurrency=self.max_concurrency,
            poll_interval=self.poll_interval,
            log=self.log,
            project_ids=project_ids,
            max_projects=self.max_projects,
        )
        return self._record(context, report)

    def _defer(self, project_ids: list[str] | None) -> None:
        """Hand the whole pass to the triggerer; the task resumes in ``execute_complete``."""
        from airflow_provider_toloka.triggers.cascade import TolokaHousekeepingTrigger

        self.defer(
            trigger=TolokaHousekeepingTrigger(
                toloka_conn_id=self.toloka_conn_id,
                min_idle_days=self.min_idle_days,
                close_open=self.close_open,
                dry_run=self.plan_only,
                max_concurrency=self.max_concurrency,
                poll_interval=self.poll_interval,
                project_ids=project_ids,
                max_projects=self.max_projects,
                wait_out_quota=self.wait_out_quota,
                quota_deadline=task_deadline(self.execution_timeout),
            ),
            method_name="execute_complete",
            # Airflow 3 applies no execution_timeout to a deferral unless told: the run in the triggerer
            # is the task's work, so it is bounded the same way (the trigger then stops its engine).
            timeout=self.execution_timeout,
        )

    def execute_complete(self, context: Context, event: Any) -> dict[str, Any]:
        """Resume after ``TolokaHousekeepingTrigger``: the same table, XCom, asset events and errors."""
        from airflow_provider_toloka.cascade.outcome import unpack
        from airflow_provider_toloka.exceptions import TolokaError
        from airflow_provider_toloka.housekeeping import Report

        if not isinstance(event, dict) or event.get("status") not in ("done", "error"):
            raise TolokaError(
                f"Expected an event from TolokaHousekeepingTrigger with a status of done or error, got "
                f"{event!r:.300}; the trigger and the task may come from different provider versions."
            )
        if event["status"] == "error":
            raise TolokaError(f"Housekeeping failed in the triggerer: {event.get('message')}")
        return self._record(context, Report.from_state(unpack(event["packed"])))

    def _record(self, context: Context, report: Report) -> dict[str, Any]:
        """Log the table, record the asset events, return the summary or fail naming the failures."""
        from airflow_provider_toloka.exceptions import TolokaHousekeepingFailed

        self.log.info("%s", report.table())
        summary = report.to_dict()
        if not self.plan_only:
            record_archived(context, self.hook.settings.api_url, report.archived_objects())
        if summary["failed"]:
            # A failed task pushes no return value: push it here, so a downstream task can read it.
            context["ti"].xcom_push(key="return_value", value=summary)
            raise TolokaHousekeepingFailed(summary)
        return summary


def _validate_days(param: str, value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{param}={value!r} is not valid: pass a number of days, 0 or more (0 archives every "
            f"closed project at once), e.g. {param}=30."
        )
    return float(value)


def _validate_project_ids(value: Any) -> list[str] | None:
    """The rendered ``project_ids``: a list of ids, or a JSON/Python list as a template renders it."""
    if value is None:
        return None
    if isinstance(value, str):
        import ast

        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(
                f"project_ids={value!r} is not valid: pass a list of project ids, e.g. "
                "project_ids=['1003', '1004'], or a template that renders one."
            ) from None
    if isinstance(value, (str, int)) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"project_ids={value!r} is not valid: pass a list of project ids, e.g. project_ids=['1003']."
        )
    return [validate_id("project_ids[]", item) for item in value]
