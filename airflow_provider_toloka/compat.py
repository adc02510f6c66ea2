"""What differs between the Airflow minors the provider supports (3.0 to 3.3), in one place.

Base classes, exceptions and ``ResumableJobMixin`` come from ``airflow.providers.common.compat.sdk``,
as in Airflow's own providers: it hands out ``airflow.sdk``'s class where the minor has it and the
older home otherwise (``BaseHook`` moved to ``airflow.sdk`` in 3.1; ``AirflowSensorTimeout`` and
``TaskDeferred`` in 3.2; ``ResumableJobMixin`` exists from 3.3, and below that common-compat's stand-in
submits on every try, where the hook then finds the archive already running).

What common-compat does not cover lives here:

- ``aget_connection_and_extra``: reading a connection inside the triggerer's event loop. Airflow 3.0 has
  no ``BaseHook.aget_connection``; on 3.1 to 3.3.1 it masks secrets with a blocking call; only 3.3.2+
  reads and masks without blocking. common-compat picks the right way for each.
- ``connection_form_widgets`` / ``ui_field_behaviour``: Airflow 3.0 and 3.1 draw a connection form from
  the hook's ``get_connection_form_widgets`` / ``get_ui_field_behaviour``; 3.2+ reads the declarative
  ``conn-fields`` / ``ui-field-behaviour`` of ``get_provider_info`` and never calls them. Both are made
  from the one declaration in ``get_provider_info``, so every minor shows the same fields.
- ``dag_bag``: ``DagBag`` moved from ``airflow.models.dagbag`` to ``airflow.dag_processing.dagbag`` in 3.2.
- ``approval_operator``: the standard provider's ``ApprovalOperator`` (human in the loop) needs Airflow
  3.1+; on 3.0 its module refuses to load with ``AirflowOptionalProviderFeatureException``, not an
  ``ImportError``, so a DAG file that tries it must catch that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection


async def aget_connection_and_extra(conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """The connection and its parsed extra, without blocking the event loop on any supported minor.

    On Airflow 3.3.2+ both reads are asynchronous; before that the synchronous ones run in a worker
    thread (``asgiref.sync_to_async``), where blocking on the secrets backend or the supervisor is safe.
    """
    from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

    conn = await get_async_connection(conn_id)
    return conn, await get_async_extra_dejson(conn)


def _toloka_connection_type() -> dict[str, Any]:
    from airflow_provider_toloka import get_provider_info

    [connection_type] = get_provider_info()["connection-types"]
    return connection_type


def connection_form_widgets() -> dict[str, Any]:
    """The ``conn-fields`` of ``get_provider_info`` as the wtforms fields Airflow 3.0 and 3.1 read.

    Those minors accept only string, integer, password and boolean fields, so a ``number`` (the request
    timeout, requests per second) is an integer field there: whole numbers from the form, any number in
    the extra JSON.
    Airflow's api-server swaps in its own stand-ins for these wtforms names before calling, so only
    ``wtforms`` must import (no Flask-AppBuilder widget is needed).
    """
    from wtforms import IntegerField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for name, field in _toloka_connection_type()["conn-fields"].items():
        schema = field["schema"]
        types = set(schema["type"]) - {"null"}
        validators: list[Any] = [Optional()]
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        field_class = IntegerField if types & {"integer", "number"} else StringField
        widgets[name] = field_class(
            field["label"], validators, description=field["description"], default=schema.get("default")
        )
    return widgets


def ui_field_behaviour() -> dict[str, Any]:
    """The ``ui-field-behaviour`` of ``get_provider_info`` in the shape of Airflow 3.0 and 3.1."""
    behaviour = _toloka_connection_type()["ui-field-behaviour"]
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def dag_bag(dag_folder: str) -> Any:
    """The DAGs of a folder, parsed as the DAG processor parses them (``./dev demo`` lists them so)."""
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_2_PLUS

    module = "airflow.dag_processing.dagbag" if AIRFLOW_V_3_2_PLUS else "airflow.models.dagbag"  # 3.0, 3.1
    return importlib.import_module(module).DagBag(dag_folder=dag_folder)


def approval_operator() -> Any:
    """``ApprovalOperator`` on Airflow 3.1+, ``None`` on 3.0 (no human-in-the-loop operators there)."""
    from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException

    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator
    except (ImportError, AirflowOptionalProviderFeatureException):  # Airflow 3.0
        return None
    return ApprovalOperator
