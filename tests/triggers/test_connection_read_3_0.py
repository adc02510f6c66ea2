"""Airflow 3.0's triggerer: a trigger's connection is read on the event loop, through the triggerer's channel.

Airflow 3.0.0 reads it in a worker thread that takes the answer from the triggerer's stdin itself, racing the
event loop for it; when the loop wins, the thread spins for ever holding the channel's lock and the whole
triggerer stops reporting (``docs/compatibility.md``). ``compat`` sends the request and reads the answer the
way the triggerer reads its own. Here a stand-in for 3.0.0's ``TriggerRunner`` answers like its supervisor;
the real one is exercised by ``tests/deployment/test_deployment.py`` in the 3.0.0 matrix cell.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS

from airflow_provider_toloka import compat

pytestmark = pytest.mark.skipif(
    AIRFLOW_V_3_1_PLUS, reason="Airflow 3.1+ triggerers read on the loop themselves"
)


class TriggerRunner:
    """3.0.0's runner as compat finds it: ``arun`` on the loop, its two streams and ``decoder``."""

    def __init__(self, connections: dict[str, dict[str, Any]]) -> None:
        from airflow.jobs.triggerer_job_runner import ToTriggerRunner
        from pydantic import TypeAdapter

        self.connections = connections
        self.requests: list[dict[str, Any]] = []
        self.response_sock: asyncio.StreamReader | None = None  # made on the loop, in arun
        self.requests_sock = self
        self.decoder = TypeAdapter(ToTriggerRunner)

    def write(self, data: bytes) -> None:
        """The supervisor's side: answer each request on the runner's stdin, as 3.0.0's does."""
        from airflow.sdk.api.datamodels._generated import ConnectionResponse
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ConnectionResult, ErrorResponse

        request = json.loads(data)
        self.requests.append(request)
        found = self.connections.get(request["conn_id"])
        if found:
            result = ConnectionResult.from_conn_response(
                ConnectionResponse(conn_id=request["conn_id"], **found)
            )
            line = result.model_dump_json(exclude_unset=True, by_alias=True)
        else:
            error = ErrorResponse(
                error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": request["conn_id"]}
            )
            line = error.model_dump_json()
        assert self.response_sock is not None
        self.response_sock.feed_data(line.encode() + b"\n")

    async def arun(self, read: Any) -> Any:
        self.response_sock = asyncio.StreamReader()
        return await read


@pytest.fixture
def runner(toloka_emulator, monkeypatch) -> TriggerRunner:
    import aiologic
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SimpleNamespace(lock=aiologic.Lock()), raising=False)
    conn = json.loads(toloka_emulator.airflow_conn_json())
    fields = {key: conn[key] for key in ("conn_type", "host", "password") if key in conn}
    fields["extra"] = json.dumps(conn.get("extra", {}))
    return TriggerRunner({"toloka_default": fields})


async def test_the_connection_comes_through_the_triggerers_channel(toloka_emulator, runner):
    conn, extra = await asyncio.ensure_future(runner.arun(compat.aget_connection_and_extra("toloka_default")))

    assert runner.requests == [{"conn_id": "toloka_default", "type": "GetConnection"}]
    assert conn.password == toloka_emulator.token
    assert extra == json.loads(toloka_emulator.airflow_conn_json()).get("extra", {})


async def test_a_missing_connection_is_not_found_naming_it(runner):
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="`toloka_other` isn't defined"):
        await asyncio.ensure_future(runner.arun(compat.aget_connection_and_extra("toloka_other")))


class FramedTriggerRunner:
    """3.0.3 to 3.0.6's runner: the same ``arun``, but requests go through ``comms_decoder.asend``."""

    def __init__(self, connections: dict[str, dict[str, Any]]) -> None:
        self.connections = connections
        self.requests: list[Any] = []
        self.comms_decoder = self

    async def asend(self, request: Any) -> Any:
        """The supervisor's answer, as 3.0.3's ``TriggerCommsDecoder.asend`` returns it, on the loop."""
        from airflow.sdk.api.datamodels._generated import ConnectionResponse
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ConnectionResult, ErrorResponse

        self.requests.append(request)
        found = self.connections.get(request.conn_id)
        if not found:
            return ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": request.conn_id})
        return ConnectionResult.from_conn_response(ConnectionResponse(conn_id=request.conn_id, **found))

    async def arun(self, read: Any) -> Any:
        return await read

    arun.__qualname__ = "TriggerRunner.arun"  # what compat looks for on the loop, as in every 3.0.x


async def test_on_3_0_3_and_later_the_connection_comes_through_the_runners_comms_on_the_loop(
    toloka_emulator, runner, monkeypatch
):
    """3.0.3 reworked the triggerer's channel: the read takes ``comms_decoder.asend``, not a worker thread."""
    framed = FramedTriggerRunner(runner.connections)

    def no_thread_read(conn_id: str) -> Any:
        raise AssertionError("Airflow's own read (a worker thread) was taken")

    monkeypatch.setattr("airflow.providers.common.compat.connection.get_async_connection", no_thread_read)
    conn, _ = await asyncio.ensure_future(framed.arun(compat.aget_connection_and_extra("toloka_default")))

    assert [request.conn_id for request in framed.requests] == ["toloka_default"]
    assert conn.password == toloka_emulator.token


async def test_a_3_0_triggerer_of_an_unknown_shape_is_refused_naming_the_way_out(runner):
    from airflow.providers.common.compat.sdk import AirflowException

    class UnknownRunner:
        async def arun(self, read: Any) -> Any:
            return await read

        arun.__qualname__ = "TriggerRunner.arun"

    with pytest.raises(AirflowException, match=r"shape this provider does not know.*Upgrade Airflow to 3.1"):
        await asyncio.ensure_future(UnknownRunner().arun(compat.aget_connection_and_extra("toloka_default")))
