"""Operators that archive one Toloka project, pool or training.

Each one submits the archive request, pushes the operation id to XCom at once (so a sensor or a
human can follow it), and by default waits for the operation to finish. An object that is already
archived is success, not failure: archiving is idempotent and retries must be safe.

The hook is imported only when a task runs, so parsing a DAG with hundreds of these tasks never
imports ``requests``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import pendulum
from airflow.configuration import conf
from airflow.providers.common.compat.sdk import BaseOperator, ResumableJobMixin

from airflow_provider_toloka.archivable import (
    MIN_CHECK_INTERVAL,
    ArchivableWait,
    archivable_after,
    time_clears,
)
from airflow_provider_toloka.assets import add_archive_alias, cascade_objects, record_archived
from airflow_provider_toloka.cascade.execute import (  # MAX_CONCURRENCY: importable here as before
    DEFAULT_MAX_CONCURRENCY,
    MAX_CONCURRENCY,  # noqa: F401
)
from airflow_provider_toloka.cascade.task import (
    cascade_hook,
    check_cascade_options,
    finish_cascade,
    run_cascade_task,
)
from airflow_provider_toloka.events import OperationEvent, operation_from_event
from airflow_provider_toloka.exceptions import (
    TolokaApiError,
    TolokaError,
    TolokaNotArchivableInTime,
    TolokaOperationTimeout,
)
from airflow_provider_toloka.links import (
    TolokaLink,
    TolokaPoolLink,
    TolokaProjectLink,
    TolokaTrainingLink,
    object_page_url,
)
from airflow_provider_toloka.operation_status import OperationStatus, describe, operation_status
from airflow_provider_toloka.quota import task_deadline, validate_wait_out_quota
from airflow_provider_toloka.validation import (
    validate_id,
    validate_optional_seconds,
    validate_seconds,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_toloka.hooks.toloka import ObjectKind, TolokaHook

# wait_until_archivable: ask every 6 hours, for up to 10 days (the 9-day rejection window and a margin).
DEFAULT_ARCHIVABLE_CHECK_INTERVAL = 6 * 3600.0
DEFAULT_ARCHIVABLE_TIMEOUT = 10 * 86400.0


class TolokaArchiveBaseOperator(ResumableJobMixin, BaseOperator):
    """Shared behaviour of the three archive operators; use one of the concrete classes.

    The operation id is kept in ``task_state_store`` (Airflow 3.3+, ``ResumableJobMixin``) before
    waiting, so a retried task waits on the archive it started instead of asking again; on older
    Airflow, or when the first answer was lost, the hook finds the running archive instead.

    :param toloka_conn_id: Airflow connection of type ``toloka`` (templated).
    :param wait_for_completion: wait for the archive operation to finish (default). When ``False``
        the task ends once Toloka accepted the request; follow it with ``TolokaOperationSensor``
        on ``{{ ti.xcom_pull(task_ids=..., key='operation_id') }}``.
    :param poll_interval: longest pause between status polls while waiting, in seconds. Polls start
        at half a second and back off to this.
    :param timeout: seconds to wait for the operation before failing the task; ``None`` waits until
        Airflow's own limits (``execution_timeout``) stop the task. The archive keeps running in
        Toloka either way, and a retry of the task waits on it instead of starting another.
    :param deferrable: wait in the triggerer instead of the worker (``TolokaOperationTrigger``), so
        the task holds no worker slot while Toloka archives. The request is still sent from the
        worker; an operation that is already finished (or a 204 for an archived object) never defers.
        Default: ``[operators] default_deferrable``.
    :param wait_until_archivable: when Toloka refuses with a code that time or other work clears
        (``THERE_IS_REJECTED_ASSIGNMENT``, ``TRAINING_ARCHIVE_CONFLICT``, ``UNARCHIVED_POOLS_CONFLICT``),
        defer with a time trigger and ask again, instead of failing. Holds no worker slot while waiting,
        and needs a triggerer. Other refusals (an open pool, 403, 404) still fail at once.
    :param archivable_check_interval: seconds between two checks (at least 60); a date in Toloka's
        refusal, when it gives one, is used instead.
    :param archivable_timeout: seconds from the first refusal after which the task fails; ``None``
        waits without limit.
    :param durable: ``ResumableJobMixin``'s own (passed through): ``False`` keeps no operation id in
        ``task_state_store``, so a retry asks Toloka again and the hook finds the running archive.
        Default ``True`` on Airflow 3.3+; below 3.3 it has no effect (the mixin warns).
    :param wait_out_quota: when Toloka answers 429 for an HOUR or DAY quota, wait in the worker for it to
        reset, if that falls before the task's ``execution_timeout`` and ``timeout``, instead of failing
        at once with ``TolokaQuotaExhausted`` (see ``docs/reliability.md``).
    """

    object_kind: ClassVar[ObjectKind]
    id_field: ClassVar[str]
    link: ClassVar[type[TolokaLink]]
    ui_color = "#d7e9f7"

    def __init__(
        self,
        *,
        toloka_conn_id: str = "toloka_default",
        wait_for_completion: bool = True,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_until_archivable: bool = False,
        archivable_check_interval: float = DEFAULT_ARCHIVABLE_CHECK_INTERVAL,
        archivable_timeout: float | None = DEFAULT_ARCHIVABLE_TIMEOUT,
        wait_out_quota: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.toloka_conn_id = toloka_conn_id
        self.wait_out_quota = validate_wait_out_quota(wait_out_quota)
        self.wait_for_completion = wait_for_completion
        self.poll_interval = validate_seconds("poll_interval", poll_interval)
        self.timeout = validate_optional_seconds("timeout", timeout)
        self.deferrable = deferrable
        if not isinstance(wait_until_archivable, bool):
            raise ValueError(
                f"wait_until_archivable={wait_until_archivable!r} is not valid: pass True or False."
            )
        self.wait_until_archivable = wait_until_archivable
        self.archivable_check_interval = validate_seconds(
            "archivable_check_interval", archivable_check_interval
        )
        if self.archivable_check_interval < MIN_CHECK_INTERVAL:
            raise ValueError(
                f"archivable_check_interval={archivable_check_interval!r} is not valid: pass at least "
                f"{MIN_CHECK_INTERVAL:g} seconds between two checks, e.g. archivable_check_interval=3600."
            )
        self.archivable_timeout = validate_optional_seconds("archivable_timeout", archivable_timeout)
        add_archive_alias(self)

    @cached_property
    def hook(self) -> TolokaHook:
        from airflow_provider_toloka.hooks.toloka import TolokaHook

        return TolokaHook(toloka_conn_id=self.toloka_conn_id, **self._quota_terms())

    def _quota_terms(self) -> dict[str, Any]:
        """The hook's ``wait_out_quota`` and deadline; the hook is built when the task starts to use it."""
        deadline = task_deadline(self.execution_timeout, self.timeout)
        return {"wait_out_quota": self.wait_out_quota, "deadline": deadline}

    # Where the mixin keeps the operation id across tries; renaming it breaks in-flight retries.
    external_id_key = "toloka_archive_operation_id"
    # The wait for archivability so far, when this run resumed from ``check_archivable_again``.
    _archivable_wait: ArchivableWait | None = None

    def execute(self, context: Context) -> dict[str, Any] | None:
        self._object_id = validate_id(self.id_field, getattr(self, self.id_field))
        self._operation: dict[str, Any] | None = None
        self.execute_resumable(context)
        if self._operation is None or self.wait_for_completion:  # archived, or already archived (204)
            self._record(context, self._operation)
        return self._operation

    def _record(self, context: Context, operation: dict[str, Any] | None) -> None:
        """The archived object's asset event (see ``airflow_provider_toloka.assets``)."""
        object_id = str(getattr(self, self.id_field))
        operation_id = operation.get("id") if operation else None
        record_archived(context, self.hook.settings.api_url, [(self.object_kind, object_id, operation_id)])

    # -- ResumableJobMixin: the operation id is the job id -------------------------------------------

    def submit_job(self, context: Context) -> str | None:
        object_id = self._object_id
        try:
            operation = self.hook.archive(self.object_kind, object_id)
        except TolokaApiError as error:
            if error.status_code == 409:  # the object exists: its page is where to fix the conflict
                self._persist_link(context, object_id)
                if self.wait_until_archivable and time_clears(error.status_code, error.code):
                    self._check_again_later(
                        str(error.code), error, toloka_says=archivable_after(error.payload)
                    )
            raise
        self._persist_link(context, object_id)
        if self._archivable_wait is not None:
            self.log.info(
                "Toloka accepted the archive of %s %s at check %d; it first refused at %s.",
                self.object_kind,
                object_id,
                self._archivable_wait.checks + 1,
                self._archivable_wait.first_refused_at.isoformat(),
            )
        if operation is None:
            self.log.info("Toloka %s %s is already archived; nothing to do.", self.object_kind, object_id)
            return None
        self.log.info("Archive of %s %s submitted: %s", self.object_kind, object_id, describe(operation))
        self._track_and_push_operation_id(operation, context)
        return operation["id"]

    def get_job_status(self, external_id: Any, context: Context) -> str:
        try:
            operation = self.hook.get_operation(str(external_id))
        except TolokaApiError as error:
            if error.status_code != 404:
                raise
            # Toloka no longer knows it: archive again (idempotent: 204 if the first one worked).
            return "UNKNOWN"
        self._track_and_push_operation_id(operation, context)
        status = operation_status(operation)
        if status is not OperationStatus.FAIL:  # reconnecting: this try's button (a FAIL resubmits)
            self._persist_link(context, self._object_id)
        return status.value

    def is_job_active(self, status: str) -> bool:
        return status in (OperationStatus.PENDING.value, OperationStatus.RUNNING.value)

    def is_job_succeeded(self, status: str) -> bool:
        return status == OperationStatus.SUCCESS.value

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        if self._operation is not None:
            self._operation = self._wait_or_defer(self._operation)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any] | None:
        return self._operation

    def _track_and_push_operation_id(self, operation: dict[str, Any], context: Context) -> None:
        """Make ``operation`` the one this try waits on, and tell XCom at once."""
        self._operation = operation
        context["ti"].xcom_push(key="operation_id", value=operation["id"])

    def _persist_link(self, context: Context, object_id: str) -> None:
        """Give the task its web-UI button: after the archive request, or with a 409 to fix the conflict.

        Not before the request: a 401 or 404 must fail with exactly one request sent. A link is a
        convenience, so failing to build one only warns.
        """
        try:
            self.link.persist(context, object_page_url(self.hook, self.object_kind, object_id))
        except (TolokaError, KeyError) as error:
            self.log.warning("No web-UI link for %s %s: %s", self.object_kind, object_id, error)

    def _wait_or_defer(self, operation: dict[str, Any]) -> dict[str, Any]:
        """The finished operation: at once if it ended, else by blocking here or deferring (which raises)."""
        status = operation_status(operation)
        if status is OperationStatus.FAIL:
            raise self.hook.operation_failed(operation)
        if status is OperationStatus.SUCCESS or not self.wait_for_completion:
            return operation
        if self.deferrable:
            self._defer(operation)
        return self.hook.wait_for_operation(
            operation["id"], poll_interval=self.poll_interval, timeout=self.timeout
        )

    def _defer(self, operation: dict[str, Any]) -> None:
        # Imported here: parsing a DAG never pays for the trigger module.
        from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

        self.defer(
            trigger=TolokaOperationTrigger(
                operation_id=operation["id"],
                toloka_conn_id=self.toloka_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout if self.timeout else None,
            ),
            method_name="execute_complete",
        )

    # -- wait_until_archivable: a time trigger between checks ------------------------------------------

    def _check_again_later(
        self, code: str, refusal: Exception, *, toloka_says: pendulum.DateTime | None = None
    ) -> None:
        """Defer until the next check; fail once ``archivable_timeout`` has passed since the first refusal."""
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        now = pendulum.now("UTC")
        previous = self._archivable_wait
        wait = previous.again() if previous is not None else ArchivableWait.start(now)
        what = f"Toloka {self.object_kind} {self._object_id}"
        moment = wait.next_check(
            now,
            interval=self.archivable_check_interval,
            timeout=self.archivable_timeout,
            toloka_says=toloka_says,
        )
        if moment is None:
            raise TolokaNotArchivableInTime(
                what=what,
                code=code,
                first_refused_at=wait.first_refused_at.isoformat(),
                last_check=now.isoformat(),
                checks=wait.checks,
                timeout=self.archivable_timeout or 0,
                refusal=refusal,
            ) from refusal
        deadline = wait.deadline(self.archivable_timeout)
        self.log.info(
            "%s is not archivable yet: Toloka answered %s at check %d. Next check at %s (%s; first "
            "refusal at %s; gives up %s). Toloka's answer: %s",
            what,
            code,
            wait.checks,
            moment.isoformat(),
            f"Toloka gave {toloka_says.isoformat()}" if toloka_says else "archivable_check_interval",
            wait.first_refused_at.isoformat(),
            f"after {deadline.isoformat()}" if deadline is not None else "never: archivable_timeout=None",
            refusal,
        )
        self.defer(
            trigger=DateTimeTrigger(moment=moment),
            method_name="check_archivable_again",
            kwargs=wait.to_kwargs(),
        )

    def check_archivable_again(
        self,
        context: Context,
        event: Any = None,
        *,
        first_refused_at: str | None = None,
        checks: int = 0,
    ) -> dict[str, Any] | None:
        """Resume after the time trigger: ask Toloka again, carrying the wait so far.

        Not ``execute_complete``: that one resumes after the archive operation's trigger. The wait so
        far comes back in the deferral's kwargs; ``dag.test()`` (Airflow 3.3) passes only the event,
        so there a refusal starts the wait, and its ``archivable_timeout``, anew.
        """
        if first_refused_at is None:
            self.log.warning(
                "Resumed without the record of this wait (dag.test() passes only the trigger's event): "
                "archivable_timeout counts from this check."
            )
            self._archivable_wait = None
        else:
            self._archivable_wait = ArchivableWait.from_kwargs(first_refused_at, checks)
        return self.execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the operation on success, raise on anything else."""

        def timed_out(event: OperationEvent) -> Exception:
            operation = event["operation"] or {"id": event["operation_id"]}
            return TolokaOperationTimeout(operation, self.timeout or 0)

        operation = operation_from_event(event, on_timeout=timed_out)
        self.log.info("%s", describe(operation))
        self._record(context, operation)
        return operation


# The base class's name before 1.0.0: DAGs and subclasses that name it keep working.
TolokaArchiveOperator = TolokaArchiveBaseOperator


class TolokaArchiveProjectOperator(TolokaArchiveBaseOperator):
    """Archive a Toloka project. Every pool and training of it must be archived first, or pass ``cascade``.

    :param project_id: the project's id (templated).
    :param cascade: archive the project's pools and trainings, then the project, in this one task
        (see ``docs/cascade.md``); each training as soon as the pools linked to it are archived.
        Stops before changing anything if an object cannot be archived, listing them all. Always
        waits for every operation: ``timeout`` bounds the whole cascade. With ``deferrable=True`` the
        whole cascade (listing, sending, waiting) runs in the triggerer (``TolokaCascadeTrigger``):
        the worker only checks the arguments, then resumes to record the outcome.
    :param close_open: with ``cascade``, close open pools and trainings first instead of refusing.
    :param dry_run: with ``cascade``, log and return the plan; send no close or archive request.
    :param max_concurrency: with ``cascade``, operations in flight at once (1-300). A 429 slows
        every worker down together.
    """

    object_kind = "project"
    id_field = "project_id"
    link = TolokaProjectLink
    operator_extra_links = (TolokaProjectLink(),)
    template_fields: Sequence[str] = ("project_id", "toloka_conn_id")

    def __init__(
        self,
        *,
        project_id: str | int,
        cascade: bool = False,
        close_open: bool = False,
        dry_run: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.cascade = cascade
        self.close_open = close_open
        # Not ``self.dry_run``: BaseOperator has a ``dry_run()`` method.
        self.plan_only = dry_run
        self.max_concurrency = check_cascade_options(
            cascade=cascade,
            close_open=close_open,
            dry_run=dry_run,
            max_concurrency=max_concurrency,
            wait_for_completion=self.wait_for_completion,
        )

    @cached_property
    def hook(self) -> TolokaHook:
        if not self.cascade:
            from airflow_provider_toloka.hooks.toloka import TolokaHook

            return TolokaHook(toloka_conn_id=self.toloka_conn_id, **self._quota_terms())
        return cascade_hook(self.toloka_conn_id, self.max_concurrency, **self._quota_terms())

    def execute(self, context: Context) -> dict[str, Any] | None:
        """Archive the project alone (resumable), or with ``cascade`` all in it (``cascade/task.py``)."""
        if not self.cascade:
            return super().execute(context)
        self._object_id = validate_id("project_id", self.project_id)
        if self.deferrable:
            self._defer_cascade()
        summary = run_cascade_task(
            self.hook,
            self._object_id,
            close_open=self.close_open,
            dry_run=self.plan_only,
            max_concurrency=self.max_concurrency,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
            log=self.log,
            check_again_later=self._check_again_later if self.wait_until_archivable else None,
            push_operation_id=self._push_operation_id(context),
        )
        return self._cascade_done(context, summary)

    def _defer_cascade(self) -> None:
        """Hand the whole cascade to the triggerer; the task resumes in ``cascade_complete``."""
        from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger

        self.defer(
            trigger=TolokaCascadeTrigger(
                project_id=self._object_id,
                toloka_conn_id=self.toloka_conn_id,
                close_open=self.close_open,
                dry_run=self.plan_only,
                max_concurrency=self.max_concurrency,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                end_time=time.time() + self.timeout if self.timeout else None,
                wait_out_quota=self.wait_out_quota,
                quota_deadline=self._quota_terms()["deadline"],
            ),
            method_name="cascade_complete",
            # A wait_until_archivable wait in progress goes along, so the next hold-back continues it.
            kwargs=self._archivable_wait.to_kwargs() if self._archivable_wait is not None else None,
            # Airflow 3 applies no execution_timeout to a deferral unless told: the run in the triggerer
            # is the task's work, so it is bounded the same way (the trigger then stops its engine).
            timeout=self.execution_timeout,
        )

    def cascade_complete(
        self,
        context: Context,
        event: Any = None,
        *,
        first_refused_at: str | None = None,
        checks: int = 0,
    ) -> dict[str, Any]:
        """Resume after ``TolokaCascadeTrigger``: record its outcome as the worker's own run would.

        The same XCom (the summary, the project's ``operation_id``), asset events and errors; a held-back
        cascade with ``wait_until_archivable`` defers until the next check, which defers the cascade anew.
        ``first_refused_at`` and ``checks``: that wait so far, carried through the cascade's deferral.
        """
        from airflow_provider_toloka.cascade.outcome import summary_from_event

        self._object_id = validate_id("project_id", self.project_id)
        if first_refused_at is not None:
            self._archivable_wait = ArchivableWait.from_kwargs(first_refused_at, checks)
        summary = finish_cascade(
            lambda: summary_from_event(event),
            dry_run=self.plan_only,
            check_again_later=self._check_again_later if self.wait_until_archivable else None,
            push_operation_id=self._push_operation_id(context),
        )
        return self._cascade_done(context, summary)

    def _push_operation_id(self, context: Context) -> Callable[[str], None]:
        return lambda operation_id: context["ti"].xcom_push(key="operation_id", value=operation_id)

    def _cascade_done(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        if not self.plan_only:
            record_archived(context, self.hook.settings.api_url, cascade_objects(summary))
        return summary


class TolokaArchivePoolOperator(TolokaArchiveBaseOperator):
    """Archive a Toloka pool. The pool must be closed; with rejected tasks, 9 days after the last rejection.

    :param pool_id: the pool's id (templated).
    """

    object_kind = "pool"
    id_field = "pool_id"
    link = TolokaPoolLink
    operator_extra_links = (TolokaPoolLink(),)
    template_fields: Sequence[str] = ("pool_id", "toloka_conn_id")

    def __init__(self, *, pool_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_id = pool_id


class TolokaArchiveTrainingOperator(TolokaArchiveBaseOperator):
    """Archive a Toloka training. It must be closed and every main pool linked to it archived.

    :param training_id: the training's id (templated).
    """

    object_kind = "training"
    id_field = "training_id"
    link = TolokaTrainingLink
    operator_extra_links = (TolokaTrainingLink(),)
    template_fields: Sequence[str] = ("training_id", "toloka_conn_id")

    def __init__(self, *, training_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_id = training_id
