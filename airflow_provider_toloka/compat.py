"""What differs between the Airflow minors the provider supports (3.0 to 3.3), in one place.

Base classes, exceptions and ``ResumableJobMixin`` come from ``airflow.providers.common.compat.sdk``,
as in Airflow's own providers: it hands out ``airflow.sdk``'s class where the minor has it and the
older home otherwise (``BaseHook`` moved to ``airflow.sdk`` in 3.1; ``AirflowSensorTimeout`` and
``TaskDeferred`` in 3.2; ``ResumableJobMixin`` exists from 3.3, and below that common-compat's stand-in
submits on every try, where the hook then finds the archive already running).

What common-compat does not cover lives here:

- ``aget_connection_and_extra``: reading a connection inside the triggerer's event loop. Airflow 3.0 has
  no ``BaseHook.aget_connection``; on 3.1 to 3.3.1 it masks secrets with a blocking call; only 3.3.2+
  reads and masks without blocking. common-compat picks the right way for each, except in Airflow 3.0's
  triggerer, where its way (the blocking read in a worker thread) can hang the whole triggerer on 3.0.0 to
  3.0.2: there every 3.0.x reads on the loop through the triggerer's channel, and a 3.0 triggerer of an
  unknown shape is refused (see ``_aget_connection_in_3_0_triggerer``). Every read has a time limit
  (``CONNECTION_READ_TIMEOUT``).
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

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

log = logging.getLogger(__name__)

# Reading a connection is one round trip to the supervisor (or the secrets backend): a read still unanswered
# after this long will not be answered, and an error the task can retry on beats a wait that never ends.
CONNECTION_READ_TIMEOUT = 60.0


async def aget_connection_and_extra(conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """The connection and its parsed extra, without blocking the event loop on any supported minor.

    On Airflow 3.3.2+ both reads are asynchronous; before that the synchronous ones run in a worker
    thread (``asgiref.sync_to_async``), where blocking on the secrets backend or the supervisor is safe,
    except in Airflow 3.0's triggerer (``_aget_connection_in_3_0_triggerer``). Raises
    ``AirflowException`` naming the connection if no answer comes within ``CONNECTION_READ_TIMEOUT``.
    """
    from airflow.providers.common.compat.sdk import AirflowException

    try:
        return await asyncio.wait_for(_aget_connection_and_extra(conn_id), CONNECTION_READ_TIMEOUT)
    except TimeoutError:
        raise AirflowException(
            f"Reading connection {conn_id!r} got no answer in {CONNECTION_READ_TIMEOUT:g} s "
            "(from the secrets backend or Airflow's supervisor); the task fails so that its retry tries again"
        ) from None


async def _aget_connection_and_extra(conn_id: str) -> tuple[Connection, dict[str, Any]]:
    from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

    conn = await _aget_connection_in_3_0_triggerer(conn_id)
    if conn is None:
        conn = await get_async_connection(conn_id)
    return conn, await get_async_extra_dejson(conn)


# The two shapes of Airflow 3.0's ``TriggerRunner``, read from each 3.0.x wheel (``docs/compatibility.md``).
STREAMS = "streams"  # 3.0.0 to 3.0.2: ``requests_sock``, ``response_sock`` and ``decoder`` (JSON lines)
FRAMES = "frames"  # 3.0.3 to 3.0.6: ``comms_decoder.asend`` (length-prefixed frames with request ids)
_STREAM_ATTRIBUTES = ("requests_sock", "response_sock", "decoder")


def _trigger_runner_3_0() -> tuple[str, Any] | None:
    """Airflow 3.0's ``TriggerRunner`` and its shape when this loop is its triggerer's, else ``None``.

    3.0 keeps the runner nowhere but in the frame of its main coroutine, ``TriggerRunner.arun``. A runner
    of neither known shape is refused (``AirflowException``): falling back to Airflow's own read would
    silently risk the hang this module exists to avoid.
    """
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS

    if AIRFLOW_V_3_1_PLUS:
        return None
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if getattr(coro, "__qualname__", "") != "TriggerRunner.arun" or frame is None:
            continue
        runner = frame.f_locals.get("self")
        if all(hasattr(runner, name) for name in _STREAM_ATTRIBUTES):
            return STREAMS, runner
        if callable(getattr(getattr(runner, "comms_decoder", None), "asend", None)):
            return FRAMES, runner
        from airflow import __version__ as airflow_version
        from airflow.providers.common.compat.sdk import AirflowException

        raise AirflowException(
            f"Airflow {airflow_version}'s triggerer is of a shape this provider does not know (it knows "
            "3.0.0 to 3.0.6), so it will not read a connection there: Airflow's own read in 3.0.0 to 3.0.2 "
            "can hang the whole triggerer. Upgrade Airflow to 3.1 or later, or run the task with "
            "deferrable=False; see docs/compatibility.md."
        )
    return None


async def _aget_connection_in_3_0_triggerer(conn_id: str) -> Connection | None:
    """A connection read in Airflow 3.0's triggerer, through the triggerer's own asynchronous channel.

    Airflow 3.0.0 to 3.0.2 (fixed in 3.0.3 and 3.1, whose triggerers route every supervisor request
    through their event loop) read a trigger's connection in a worker thread that sends the request and
    then reads the answer from the triggerer's stdin itself, holding the supervisor channel's lock. But the
    event loop also reads that stdin (non-blocking, for its own answers): when the loop gets the answer
    first, the thread spins on an empty non-blocking read forever, still holding the lock, and the loop
    waits on the lock to report trigger events. Every deferred task of that triggerer then stays
    deferred, with nothing in any log. Here the request goes out and its answer is read the way the
    triggerer reads its own (under the same lock, on the loop), so there is one reader of stdin. On 3.0.3
    to 3.0.6 the read goes through the runner's ``comms_decoder.asend``, on the loop too, without the
    worker thread Airflow's own read would take. ``None`` outside 3.0's triggerer.
    """
    found = _trigger_runner_3_0()
    if found is None:
        return None
    shape, runner = found
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ConnectionResult, ErrorResponse, GetConnection
    from airflow.sdk.execution_time.context import _convert_connection_result_conn  # type: ignore[attr-defined]
    from airflow.sdk.execution_time.secrets_masker import mask_secret
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded
    from asgiref.sync import sync_to_async

    # The secrets backends first, as Airflow does (they never use the channel, but may block: a thread).
    conn = await sync_to_async(_from_secrets_backends)(conn_id, ensure_secrets_backend_loaded())
    if conn is None:
        request = GetConnection(conn_id=conn_id)
        if shape == STREAMS:
            from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

            async with SUPERVISOR_COMMS.lock:  # type: ignore[attr-defined]
                runner.requests_sock.write(request.model_dump_json().encode() + b"\n")
                line = await runner.response_sock.readline()
            answer = runner.decoder.validate_json(line)
        else:
            answer = await runner.comms_decoder.asend(request)
        if isinstance(answer, ErrorResponse):
            from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException

            if answer.error == ErrorType.CONNECTION_NOT_FOUND:
                raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")
            raise AirflowException(f"Airflow's supervisor could not read connection {conn_id!r}: {answer}")
        if not isinstance(answer, ConnectionResult):
            raise RuntimeError(f"Expected the answer to GetConnection, got {type(answer).__name__}")
        conn = _convert_connection_result_conn(answer)
    if conn.password:
        mask_secret(conn.password)
    if conn.extra:
        mask_secret(conn.extra)
    log.info("Connection %r read through Airflow 3.0's triggerer channel (%s)", conn_id, shape)
    return conn


def _from_secrets_backends(conn_id: str, backends: list[Any]) -> Any:
    for backend in backends:
        try:
            conn = backend.get_connection(conn_id=conn_id)
        except Exception:
            log.exception("Unable to retrieve connection from secrets backend (%s)", type(backend).__name__)
            continue
        if conn:
            return conn
    return None


def _toloka_connection_type() -> dict[str, Any]:
    from airflow_provider_toloka import get_provider_info

    [connection_type] = get_provider_info()["connection-types"]
    return connection_type


def connection_form_widgets() -> dict[str, Any]:
    """The ``conn-fields`` of ``get_provider_info`` as the wtforms fields Airflow 3.0 and 3.1 read.

    Those minors accept only string, integer, password and boolean fields, so a ``number`` (the request
    timeout, requests per second) is an integer field there: whole numbers from the form, any number in
    the extra JSON. A ``"format": "password"`` string (the store's password) is a ``PasswordField``, so
    the form masks what is typed, as 3.2+ does from the format.
    Airflow's api-server swaps in its own stand-ins for these wtforms names before calling, so only
    ``wtforms`` must import (no Flask-AppBuilder widget is needed).
    """
    from wtforms import IntegerField, PasswordField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for name, field in _toloka_connection_type()["conn-fields"].items():
        schema = field["schema"]
        types = set(schema["type"]) - {"null"}
        validators: list[Any] = [Optional()]
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        field_class = IntegerField if types & {"integer", "number"} else StringField
        if schema.get("format") == "password":
            field_class = PasswordField
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
