"""The triggerer reads the Toloka connection without blocking its event loop, on every supported minor.

A blocking read stalls every trigger sharing the loop (a secrets backend can take seconds), and inside
a real triggerer Airflow's synchronous secret masking raises ``DeadlockImminentError`` when another
async call is in flight. Airflow 3.3.2+ reads and masks asynchronously; 3.0 to 3.3.1 offer only the
synchronous ``BaseHook.get_connection`` and ``Connection.extra_dejson`` (3.1's ``aget_connection``
masks synchronously), so those must run in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from airflow.providers.common.compat.sdk import BaseHook, Connection

from airflow_provider_toloka import compat


def _connection_classes() -> list[type]:
    """Every class a connection read may return here: the SDK's and, on 3.0, the ORM model."""
    classes: list[type] = [Connection]
    try:
        from airflow.models.connection import Connection as ModelConnection
    except ImportError:
        return classes
    return [*classes, ModelConnection] if ModelConnection is not Connection else classes


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def sync_reads(monkeypatch):
    """Record, for every synchronous connection read, whether it ran on the event loop's thread."""
    calls: list[tuple[str, bool]] = []
    get_connection = BaseHook.get_connection.__func__  # type: ignore[attr-defined]

    def recording_get_connection(cls, conn_id):
        calls.append(("BaseHook.get_connection", _on_a_running_loop()))
        return get_connection(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(recording_get_connection))
    for klass in _connection_classes():
        extra_dejson = klass.extra_dejson

        def recording_extra_dejson(self, _prop=extra_dejson, _name=klass.__module__):
            calls.append((f"{_name}.Connection.extra_dejson", _on_a_running_loop()))
            return _prop.fget(self)

        monkeypatch.setattr(klass, "extra_dejson", property(recording_extra_dejson))
    return calls


async def test_the_connection_is_read_off_the_event_loop(toloka_conn, sync_reads):
    """What the trigger's shared client reads first (``hooks.toloka_async._open``)."""
    conn, extra = await compat.aget_connection_and_extra("toloka_default")

    assert conn.password == toloka_conn.token
    assert extra == {"auth_scheme": "OAuth"}
    on_loop = [name for name, on_the_loop in sync_reads if on_the_loop]
    assert on_loop == [], f"blocking reads on the event loop's thread: {on_loop}"
    if not hasattr(Connection, "aextra_dejson"):  # below Airflow 3.3.2: the synchronous reads, in a thread
        assert "BaseHook.get_connection" in {name for name, _ in sync_reads}


async def test_a_connection_read_that_never_answers_becomes_an_error_naming_the_connection(
    toloka_conn, monkeypatch
):
    """A read stuck in the secrets backend or Airflow's supervisor (Airflow 3.0.0's triggerer could wedge
    so) fails the wait with a clear error, which the task's retry can act on, instead of waiting forever."""
    from airflow.providers.common.compat.sdk import AirflowException

    release = threading.Event()

    def stuck_get_connection(cls, conn_id):
        release.wait()
        raise AssertionError("answered after the time limit")

    async def stuck_aget_connection(cls, conn_id):
        await asyncio.Event().wait()

    # Whichever read this minor uses (the synchronous one in a thread, or BaseHook.aget_connection).
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(stuck_get_connection))
    if hasattr(BaseHook, "aget_connection"):
        monkeypatch.setattr(BaseHook, "aget_connection", classmethod(stuck_aget_connection))
    monkeypatch.setattr(compat, "CONNECTION_READ_TIMEOUT", 0.2)
    try:
        with pytest.raises(AirflowException, match="connection 'toloka_default' got no answer in 0.2 s"):
            await compat.aget_connection_and_extra("toloka_default")
    finally:
        release.set()
