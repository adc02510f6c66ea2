"""Operators that archive one Toloka project, pool or training.

Each one submits the archive request, pushes the operation id to XCom at once (so a sensor or a
human can follow it), and by default waits for the operation to finish. An object that is already
archived is success, not failure: archiving is idempotent and retries must be safe.

The hook is imported only when a task runs, so parsing a DAG with hundreds of these tasks never
imports ``requests``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_provider_toloka.events import OperationEvent, operation_from_event
from airflow_provider_toloka.exceptions import TolokaOperationTimeout
from airflow_provider_toloka.operation import OperationStatus, describe, operation_status
from airflow_provider_toloka.validation import validate_id, validate_optional_seconds, validate_seconds

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_toloka.hooks.toloka import ObjectKind, TolokaHook


class TolokaArchiveOperator(BaseOperator):
    """Shared behaviour of the three archive operators; use one of the concrete classes.

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
    """

    object_kind: ClassVar[ObjectKind]
    id_field: ClassVar[str]
    ui_color = "#d7e9f7"

    def __init__(
        self,
        *,
        toloka_conn_id: str = "toloka_default",
        wait_for_completion: bool = True,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.toloka_conn_id = toloka_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = validate_seconds("poll_interval", poll_interval)
        self.timeout = validate_optional_seconds("timeout", timeout)
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> TolokaHook:
        from airflow_provider_toloka.hooks.toloka import TolokaHook

        return TolokaHook(toloka_conn_id=self.toloka_conn_id)

    def execute(self, context: Context) -> dict[str, Any] | None:
        object_id = validate_id(self.id_field, getattr(self, self.id_field))
        operation = self.hook.archive(self.object_kind, object_id)
        if operation is None:
            self.log.info("Toloka %s %s is already archived; nothing to do.", self.object_kind, object_id)
            return None
        context["ti"].xcom_push(key="operation_id", value=operation["id"])
        self.log.info("Archive of %s %s submitted: %s", self.object_kind, object_id, describe(operation))
        return self._finish(operation)

    def _finish(self, operation: dict[str, Any]) -> dict[str, Any]:
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

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the operation on success, raise on anything else."""

        def timed_out(event: OperationEvent) -> Exception:
            operation = event["operation"] or {"id": event["operation_id"]}
            return TolokaOperationTimeout(operation, self.timeout or 0)

        operation = operation_from_event(event, on_timeout=timed_out)
        self.log.info("%s", describe(operation))
        return operation


class TolokaArchiveProjectOperator(TolokaArchiveOperator):
    """Archive a Toloka project. Every pool and training of it must be archived first.

    :param project_id: the project's id (templated).
    """

    object_kind = "project"
    id_field = "project_id"
    template_fields: Sequence[str] = ("project_id", "toloka_conn_id")

    def __init__(self, *, project_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id


class TolokaArchivePoolOperator(TolokaArchiveOperator):
    """Archive a Toloka pool. The pool must be closed; with rejected tasks, 9 days after the last rejection.

    :param pool_id: the pool's id (templated).
    """

    object_kind = "pool"
    id_field = "pool_id"
    template_fields: Sequence[str] = ("pool_id", "toloka_conn_id")

    def __init__(self, *, pool_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_id = pool_id


class TolokaArchiveTrainingOperator(TolokaArchiveOperator):
    """Archive a Toloka training. It must be closed and every main pool linked to it archived.

    :param training_id: the training's id (templated).
    """

    object_kind = "training"
    id_field = "training_id"
    template_fields: Sequence[str] = ("training_id", "toloka_conn_id")

    def __init__(self, *, training_id: str | int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_id = training_id
