"""Wait for a Toloka operation that another task started."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_toloka.exceptions import TolokaError
from airflow_provider_toloka.links import TolokaOperationLink, operation_page_url
from airflow_provider_toloka.operation import OperationStatus, describe, operation_status
from airflow_provider_toloka.validation import validate_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_toloka.hooks.toloka import TolokaHook

_NO_OPERATION = (None, "", "None")


class TolokaOperationSensor(BaseSensorOperator):
    """Succeed when a Toloka operation reaches ``SUCCESS``; fail when it reaches ``FAIL``.

    Typical use: after an archive operator with ``wait_for_completion=False``, with
    ``operation_id="{{ ti.xcom_pull(task_ids='archive_pool', key='operation_id') }}"``. Works in
    ``poke`` and ``reschedule`` mode; the finished operation is returned through XCom. When the
    upstream found the object already archived there is no operation: an ``operation_id`` that
    renders to ``None`` or an empty string succeeds at once with a warning.

    :param operation_id: the operation to wait for (templated).
    :param toloka_conn_id: Airflow connection of type ``toloka`` (templated).
    :param poke_interval: seconds between polls (Airflow's sensor argument; 30 here, as archives
        take seconds to minutes).
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
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.operation_id = operation_id
        self.toloka_conn_id = toloka_conn_id
        self._link_persisted = False

    @cached_property
    def hook(self) -> TolokaHook:
        from airflow_provider_toloka.hooks.toloka import TolokaHook

        return TolokaHook(toloka_conn_id=self.toloka_conn_id)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self.operation_id in _NO_OPERATION:
            # An archive operator pushes no operation_id when the object was already archived.
            self.log.warning(
                "operation_id rendered to %r: nothing to wait for. The upstream archive found the object "
                "already archived, or the xcom_pull names the wrong task.",
                self.operation_id,
            )
            return PokeReturnValue(is_done=True, xcom_value=None)
        operation = self.hook.get_operation(validate_id("operation_id", self.operation_id))
        self._persist_link(context, operation)
        status = operation_status(operation)
        if status is OperationStatus.FAIL:
            raise self.hook.operation_failed(operation)
        self.log.info("%s", describe(operation))
        if status is OperationStatus.SUCCESS:
            return PokeReturnValue(is_done=True, xcom_value=operation)
        return False

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
