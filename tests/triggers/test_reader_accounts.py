"""The triggerer's shared reader and ``act_under_account_id``, against the emulator over real HTTP.

Toloka shows an operation to the account that started it, so a wait must be read under that account:
two connections that differ only in the account never share a reader, and a connection whose account is
changed while waits are running keeps reading those under the old one.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_toloka.hooks import toloka_async
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger
from airflow_provider_toloka.triggers.reader import active_reader

OPS = "/api/v1/operations"


def conn_json(emu, account: str | None) -> str:
    extra = {} if account is None else {"act_under_account_id": account}
    return json.dumps({"conn_type": "toloka", "host": emu.url, "password": emu.token, "extra": extra})


@pytest.fixture
def emu(toloka_conn, monkeypatch):
    toloka_conn.accounts = ["team-a", "team-b"]
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_A", conn_json(toloka_conn, "team-a"))
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_B", conn_json(toloka_conn, "team-b"))
    toloka_conn.add_project("1")
    return toloka_conn


def start_archive(emu, conn_id: str, pool_id: str) -> str:
    emu.add_pool(pool_id, project_id="1", status="CLOSED")
    return TolokaHook(conn_id).archive_pool(pool_id)["id"]


async def wait(conn_id: str, operation_id: str) -> dict:
    [event] = [
        e.payload async for e in TolokaOperationTrigger(operation_id, conn_id, poll_interval=0.1).run()
    ]
    return event


async def until(condition, step: float = 0.02, limit: float = 60.0) -> None:
    """Wait for ``condition``; fail (not hang) if it has not come in ``limit`` seconds."""
    waited = 0.0
    while not condition():
        assert waited < limit, "the condition never came"
        await asyncio.sleep(step)
        waited += step


async def test_two_connections_differing_only_in_the_account_never_share_a_read(emu):
    emu.operation_duration = 1.0
    op_a = start_archive(emu, "team_a", "10")
    op_b = start_archive(emu, "team_b", "11")
    emu.clear_requests()

    events = await asyncio.gather(wait("team_a", op_a), wait("team_b", op_b))

    assert [e["status"] for e in events] == ["success", "success"]
    reads = [r for r in emu.requests if r.path.startswith(OPS)]
    assert {r.account for r in reads} == {"team-a", "team-b"}
    # Each operation was read only under the account that started it.
    assert {r.account for r in reads if r.path == f"{OPS}/{op_a}"} == {"team-a"}
    assert {r.account for r in reads if r.path == f"{OPS}/{op_b}"} == {"team-b"}


async def test_a_changed_account_keeps_running_waits_on_the_old_one_and_new_waits_on_the_new(
    emu, monkeypatch
):
    monkeypatch.setattr(toloka_async, "MAX_AGE", 0.0)  # re-read the connection before every round
    emu.operation_duration = 60
    old_op = start_archive(emu, "team_a", "10")
    first = asyncio.ensure_future(wait("team_a", old_op))
    await until(lambda: any(r.path == f"{OPS}/{old_op}" for r in emu.requests))
    old_reader = active_reader("team_a")
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_A", conn_json(emu, "team-b"))
    await until(lambda: active_reader("team_a") is None)  # the old reader left the registry

    new_op = start_archive(emu, "team_a", "11")  # started under team-b now
    second = asyncio.ensure_future(wait("team_a", new_op))
    await until(lambda: any(r.path == f"{OPS}/{new_op}" for r in emu.requests))
    assert active_reader("team_a") is not old_reader
    emu.clear_requests()
    emu.advance_clock(120)
    events = await asyncio.gather(first, second)

    assert [e["status"] for e in events] == ["success", "success"]
    assert {r.account for r in emu.requests if r.path == f"{OPS}/{old_op}"} == {"team-a"}
    assert {r.account for r in emu.requests if r.path == f"{OPS}/{new_op}"} == {"team-b"}
    assert old_reader is not None
    assert old_reader.closed


def rotated_conn_json(emu, account: str, token: str) -> str:
    return json.dumps(
        {
            "conn_type": "toloka",
            "host": emu.url,
            "password": token,
            "extra": {"act_under_account_id": account},
        }
    )


async def test_a_rotated_token_reaches_waits_kept_on_the_old_account(emu, monkeypatch):
    """The account changes, then the token is rotated (the old one answers 401): the waits still reading
    under the old account get the new token at the next re-read, and end in success, not in a 401."""
    monkeypatch.setattr(toloka_async, "MAX_AGE", 0.0)  # re-read the connection before every round
    emu.operation_duration = 60
    old_op = start_archive(emu, "team_a", "10")
    first = asyncio.ensure_future(wait("team_a", old_op))
    await until(lambda: any(r.path == f"{OPS}/{old_op}" for r in emu.requests))
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_A", conn_json(emu, "team-b"))
    await until(lambda: active_reader("team_a") is None)  # it kept its waits on team-a and left

    emu.rotate_token("rotated-token")
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_A", rotated_conn_json(emu, "team-b", "rotated-token"))
    emu.clear_requests()
    await until(lambda: any(r.path == f"{OPS}/{old_op}" and r.status == 200 for r in emu.requests))
    emu.advance_clock(120)
    event = await first

    assert event["status"] == "success", event
    assert {r.account for r in emu.requests if r.path == f"{OPS}/{old_op}"} == {"team-a"}


async def test_a_wait_starting_after_the_account_changed_never_reads_under_the_old_one(emu, monkeypatch):
    """Without waiting for the five-minute re-read: a wait that joins the reader after the connection's
    account changed is read under the new account from its first read."""
    emu.operation_duration = 60
    old_op = start_archive(emu, "team_a", "10")
    first = asyncio.ensure_future(wait("team_a", old_op))
    await until(lambda: any(r.path == f"{OPS}/{old_op}" for r in emu.requests))
    monkeypatch.setenv("AIRFLOW_CONN_TEAM_A", conn_json(emu, "team-b"))

    new_op = start_archive(emu, "team_a", "11")  # started under team-b now
    emu.clear_requests()
    second = asyncio.ensure_future(wait("team_a", new_op))
    await until(lambda: any(r.path.startswith(OPS) and r.status == 200 for r in emu.requests))
    emu.advance_clock(120)
    events = await asyncio.gather(first, second)

    assert [e["status"] for e in events] == ["success", "success"], events
    assert {r.account for r in emu.requests if r.path == f"{OPS}/{new_op}"} == {"team-b"}
    assert {r.account for r in emu.requests if r.path == f"{OPS}/{old_op}"} == {"team-a"}
