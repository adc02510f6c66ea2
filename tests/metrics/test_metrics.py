"""The provider's ``toloka.*`` metrics arrive on a real StatsD socket through Airflow's own ``Stats``.

A process configured as a deployment would be (``[metrics] statsd_on`` and friends, in the environment)
runs an archive in the worker and one in the triggerer (``emit.py``); the test is the StatsD server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EMIT = Path(__file__).with_name("emit.py")


@pytest.fixture
def statsd() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        server.bind(("127.0.0.1", 0))
        yield server


def received(server: socket.socket) -> list[str]:
    """Every StatsD line in the socket's buffer (the sender has exited: everything it sent is there)."""
    server.setblocking(False)
    lines: list[str] = []
    while True:
        try:
            packet = server.recv(65536)
        except BlockingIOError:
            return lines
        lines.extend(packet.decode().splitlines())


@pytest.mark.parametrize("metrics_on", [True, False], ids=["statsd_on", "metrics_off"])
def test_the_metrics_reach_statsd_and_nothing_when_off(
    toloka_conn, redis_store, statsd, monkeypatch, metrics_on
):
    emu = toloka_conn
    emu.operation_duration = 0.2
    emu.add_project("1")
    emu.add_pool("10", project_id="1", status="CLOSED")
    for pool_id in range(11, 21):
        emu.add_pool(str(pool_id), project_id="1", status="CLOSED")
    emu.inject_fault("429", path="/pools/10/archive")
    emu.inject_fault("429", quota="MIN", retry_after=0.1, path="/pools/10/archive")
    conn = json.loads(emu.airflow_conn_json())
    conn["extra"].update(requests_per_second=50, **redis_store.budget_extra())
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", str(metrics_on))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")

    with subprocess.Popen(
        [sys.executable, str(EMIT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as run:
        assert run.stdin is not None
        assert run.stdout is not None
        for line in run.stdout:  # Airflow may log to stdout too
            if line.startswith(("stop the store", "start the store")):
                redis_store.stop() if line.startswith("stop") else redis_store.start()
                run.stdin.write("\n")
                run.stdin.flush()
            elif line.startswith("done"):
                break
        else:
            pytest.fail("the process ended before it was done")
        assert run.wait(timeout=60) == 0
    lines = received(statsd)
    if not metrics_on:
        assert lines == []
        return
    ours = [line for line in lines if line.startswith("airflow.toloka.")]
    print("\n".join(sorted(set(ours))))  # with -s: a sample of each, as docs/deployment.md shows them
    names = {line.split(":")[0]: line.split("|")[1] for line in ours}
    assert names["airflow.toloka.requests.post.202"] == "c"
    assert names["airflow.toloka.requests.get.200"] == "c"
    assert names["airflow.toloka.requests.post.429"] == "c"
    assert names["airflow.toloka.rate_limited"] == "c"
    assert names["airflow.toloka.quota_exhausted.min"] == "c"
    assert names["airflow.toloka.archives.pool"] == "c"
    assert names["airflow.toloka.operation.duration.pool_archive"] == "ms"
    assert names["airflow.toloka.budget.wait"] == "ms"
    assert names["airflow.toloka.reader.waits"] == "g"
    assert names["airflow.toloka.reader.single_reads"] == "c"
    assert names["airflow.toloka.reader.list_reads"] == "c"
    assert names["airflow.toloka.budget.lost"] == "c"
    assert names["airflow.toloka.budget.recovered"] == "c"
    assert redis_store.password not in "\n".join(lines)
