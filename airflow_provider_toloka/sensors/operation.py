"""Wait for a Toloka operation that another task started."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator, PokeReturnValue

from airflow_provider_toloka.events import OperationEvent, operation_from_event
from airflow_provider_toloka.exceptions import TolokaError, TolokaRetriesExhausted
from airflow_provider_toloka.links import TolokaOperationLink, operation_page_url
from airflow_provider_toloka.operation_status import OperationStatus, describe, operation_status
from airflow_provider_toloka.outage import Outage
from airflow_provider_toloka.quota import task_deadline, validate_wait_out_quota
from airflow_provider_toloka.validation import validate_id, validate_seconds

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_toloka.hooks.toloka import TolokaHook

_NO_OPERATION = (None, "", "None")


class TolokaOperationSensor(BaseSensorOperator):
    """Succeed when a Toloka operation reaches ``SUCCESS``; fail when it reaches ``FAIL``.

    Typical use: after an archive operator with ``wait_for_completion=False``, with
    ``operation_id="{{ ti.xcom_pull(task_ids='archive_pool', key='operation_id') }}"``. Works in
    ``poke`` and ``reschedule`` mode; the finished operation is returned through XCom. When the
    upstream found the object already archived there is no operation: an ``operation_id`` that
    renders to ``None`` or an empty string succeeds at once with a warning.

    A Toloka outage does not fail the sensor: a poke whose read still fails after the hook's retries
    (429, 5xx, dropped connections, time-outs) counts as "not done yet", and the sensor keeps poking
    until Toloka answers or its ``timeout`` runs out. A refusal (any other 4xx) fails at once. In
    ``poke`` mode the outage is logged when it begins and when it ends; in ``reschedule`` mode every
    poke is a new process, so each poke that meets the outage logs it once.

    :param operation_id: the operation to wait for (templated).
    :param toloka_conn_id: Airflow connection of type ``toloka`` (templated).
    :param poke_interval: seconds between polls (Airflow's sensor argument; 30 here, as archives
        take seconds to minutes).
    :param deferrable: after one check in the worker, wait in the triggerer
        (``TolokaOperationTrigger``, polling every ``poke_interval`` at most) instead of poking;
        ``mode`` is then ignored and ``timeout`` becomes the trigger's deadline. Default:
        ``[operators] default_deferrable``.
    :param wait_out_quota: when Toloka answers 429 for an HOUR or DAY quota, wait for it to reset if
        that falls before the sensor's ``timeout`` and ``execution_timeout``, instead of failing at once.
    """

    template_fields: Sequence[str] = ("operation_id", "toloka_conn_id")
    ui_color = "#d7e9f7"
    operator_extra_links = (TolokaOperationLink(),)

    def __init__(
        self,
        *,
        operation_id: str,
        toloka_conn_id: str = "toloka_default",
        poke_interval: float = 30.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_out_quota: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.wait_out_quota = validate_wait_out_quota(wait_out_quota)
        self.operation_id = operation_id
        self.toloka_conn_id = toloka_conn_id
        self._link_persisted = False
        self._deadline_set = False
        self.deferrable = deferrable
        if deferrable:  # poke mode accepts 0; the trigger must not spin, so refuse it here, not at defer
            validate_seconds("poke_interval", self.poke_interval)
            validate_seconds("timeout", self.timeout)

    @cached_property
    def hook(self) -> TolokaHook:
        from airflow_provider_toloka.hooks.toloka import TolokaHook

        # ``poke`` moves the deadline to the first poke's in reschedule mode (``_deadline``).
        return TolokaHook(
            toloka_conn_id=self.toloka_conn_id,
            wait_out_quota=self.wait_out_quota,
            deadline=task_deadline(self.execution_timeout, self.timeout),
        )

    def _deadline(self, context: Context) -> float | None:
        """When Airflow stops this sensor: its ``timeout`` counted from the first poke, or this poke's
        ``execution_timeout``, whichever comes first.

        In ``reschedule`` mode every poke is a new process, while Airflow counts ``timeout`` from the
        first poke (``get_first_reschedule_date``) and ``execution_timeout`` per poke: a deadline counted
        from this poke would let ``wait_out_quota`` approve a wait past the sensor's real timeout.
        """
        timeout = self.timeout
        first_poke = None
        if self.reschedule and context.get("task_reschedule_count"):
            first_poke = getattr(context["ti"], "get_first_reschedule_date", lambda _: None)(context)
        if first_poke is not None:
            spent = time.time() - first_poke.timestamp()
            # A spent timeout is a deadline of now (0 would read as "no timeout").
            timeout = max(timeout - spent, 1e-3)
        return task_deadline(self.execution_timeout, timeout)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self.operation_id in _NO_OPERATION:
            # An archive operator pushes no operation_id when the object was already archived.
            self.log.warning(
                "operation_id rendered to %r: nothing to wait for. The upstream archive found the object "
                "already archived, or the xcom_pull names the wrong task.",
                self.operation_id,
            )
            return PokeReturnValue(is_done=True, xcom_value=None)
        operation_id = validate_id("operation_id", self.operation_id)
        if not self._deadline_set:  # once per process: every reschedule-mode poke is a new one
            self.hook.deadline = self._deadline(context)
            self._deadline_set = True
        try:
            operation = self.hook.get_operation(operation_id)
        except TolokaRetriesExhausted as error:
            self._outage.failed(error)
            return False
        self._outage.recovered()
        self._persist_link(context, operation)
        status = operation_status(operation)
        if status is OperationStatus.FAIL:
            raise self.hook.operation_failed(operation)
        self.log.info("%s", describe(operation))
        if status is OperationStatus.SUCCESS:
            return PokeReturnValue(is_done=True, xcom_value=operation)
        return False

    @cached_property
    def _outage(self) -> Outage:
        return Outage(
            f"operation {self.operation_id}",
            self.log,
            min_wait=self.poke_interval,
            max_wait=self.poke_interval,
        )

    def _persist_link(self, context: Context, operation: dict[str, Any]) -> None:
        """Link to the operation's object once per sensor process; a missing link only warns."""
        if self._link_persisted:
            return
        self._link_persisted = True
        try:
            url = operation_page_url(self.hook, operation)
        except (TolokaError, KeyError) as error:
            self.log.warning("No web-UI link for operation %s: %s", operation.get("id"), error)
            return
        if url:
            TolokaOperationLink.persist(context, url)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        # Imported here: parsing a DAG never pays for the trigger module.
        from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

        self.defer(
            trigger=TolokaOperationTrigger(
                operation_id=str(self.operation_id),
                toloka_conn_id=self.toloka_conn_id,
                poll_interval=self.poke_interval,
                end_time=time.time() + self.timeout,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: return the operation on success, raise on anything else.

        A timeout raises ``AirflowSensorTimeout``, so ``soft_fail`` skips the task as in poke mode.
        """

        def timed_out(event: OperationEvent) -> Exception:
            return AirflowSensorTimeout(event["message"])

        operation = operation_from_event(event, on_timeout=timed_out)
        self.log.info("%s", describe(operation))
        return operation
