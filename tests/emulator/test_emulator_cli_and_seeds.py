"""Seeds, the command line and the cheap plugin import: how people start the emulator outside a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from airflow_provider_toloka.cascade.plan import required_training_id
from airflow_provider_toloka.emulator.server import TolokaEmulator

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def test_the_demo_seed_holds_both_demo_projects():
    emulator = TolokaEmulator(seed="demo")  # seeding needs no running server

    assert emulator.object("project", "1001")["status"] == "ACTIVE"
    assert [emulator.object("pool", pid)["status"] for pid in ("2001", "2002")] == ["CLOSED", "CLOSED"]
    for pool_id, training_id in (("2001", "3001"), ("2002", "3001"), ("2101", "3101")):
        assert required_training_id(emulator.object("pool", pool_id)) == training_id
    assert emulator.object("pool", "2101")["project_id"] == "1002"
    assert emulator.object("pool", "2401")["project_id"] == "1004"
    assert "main_pool_ids" not in emulator.object("training", "3001")


def test_a_seed_file_loads_rejections_and_links(tmp_path, toloka_emulator, api):
    seed = tmp_path / "world.json"
    seed.write_text(
        json.dumps(
            {
                "projects": [{"id": "7"}],
                "pools": [
                    {
                        "id": "70",
                        "project_id": "7",
                        "last_rejection": "2999-01-01T00:00:00",
                        "last_stopped": "2026-03-04T05:06:07",
                    }
                ],
                "trainings": [{"id": "71", "project_id": "7", "status": "OPEN", "linked_pool_ids": ["70"]}],
            }
        )
    )

    toloka_emulator.load_seed(seed)

    assert api.post("/pools/70/archive").json()["code"] == "THERE_IS_REJECTED_ASSIGNMENT"
    assert "main_pool_ids" not in api.get("/trainings/71").json()
    pool = api.get("/pools/70").json()
    assert pool["last_stopped"] == "2026-03-04T05:06:07.000"
    assert pool["quality_control"]["training_requirement"]["training_pool_id"] == "71"


def test_bad_seeds_say_what_is_wrong(tmp_path):
    emulator = TolokaEmulator()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"pools": [{"id": "1", "project_id": "1", "colour": "red"}]}))

    with pytest.raises(FileNotFoundError, match="demo"):
        emulator.load_seed("no-such-seed")
    with pytest.raises(ValueError, match="colour"):
        emulator.load_seed(broken)


def test_the_cli_serves_the_demo_seed_and_prints_the_airflow_connection():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_toloka.emulator",
            "--port",
            "0",
            "--seed",
            "demo",
            "--token",
            "cli",
            "--account",
            "team-a",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert "/api/v1" in lines[0]
        name, _, value = lines[1].strip().partition("=")
        assert name == "AIRFLOW_CONN_TOLOKA_DEFAULT"
        conn = json.loads(value.strip("'"))
        assert conn["password"] == "cli"

        response = requests.get(
            f"{conn['host']}/api/v1/pools/2001", headers={"Authorization": "OAuth cli"}, timeout=5
        )

        assert response.json()["status"] == "CLOSED"
        as_member = {"Authorization": "OAuth cli", "X-Act-Under-Account-ID": "team-a"}
        as_stranger = {**as_member, "X-Act-Under-Account-ID": "team-b"}
        assert requests.get(f"{conn['host']}/api/v1/pools/2001", headers=as_member, timeout=5).ok
        assert (
            requests.get(f"{conn['host']}/api/v1/pools/2001", headers=as_stranger, timeout=5).status_code
            == 403
        )
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "stopped" in out


def test_importing_the_pytest_plugin_loads_no_web_stack():
    code = (
        "import sys, airflow_provider_toloka.emulator.pytest_plugin;"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )

    assert result.stdout.strip() == "[]"


def test_sigusr1_makes_an_outage_that_keeps_the_state():
    """Fault tests need Toloka gone for a while and back with its operations: a restart would lose them."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--seed", "demo"),
            *("--token", "cli", "--outage-seconds", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        process.stdout.readline()  # the AIRFLOW_CONN_TOLOKA_DEFAULT line
        assert process.stdout.readline().startswith("Control API:")
        headers = {"Authorization": "OAuth cli"}
        operation = requests.post(f"{url}/pools/2001/archive", headers=headers, timeout=5).json()

        process.send_signal(signal.SIGUSR1)

        assert process.stdout.readline().startswith("Outage: not listening for 1 s")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/operations/{operation['id']}", headers=headers, timeout=5)
        assert process.stdout.readline().startswith("Outage over")
        again = requests.get(f"{url}/operations/{operation['id']}", headers=headers, timeout=5)
        assert again.json()["id"] == operation["id"]
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert process.returncode == 0
