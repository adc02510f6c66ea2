"""The HTTP control API (``/_emulator/``) of ``python -m airflow_provider_toloka.emulator``, run as its own
process and steered only over HTTP, as a test in another language or container would."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
CONTROL_TOKEN = "control-secret"
TOLOKA_TOKEN = "cli"


class Process:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url
        self.session = requests.Session()

    def control(
        self, method: str, path: str, body: Any = None, token: str | None = CONTROL_TOKEN
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.request(
            method, f"{self.url}/_emulator/{path}", json=body, headers=headers, timeout=5
        )

    def api(self, method: str, path: str, **params: Any) -> requests.Response:
        headers = {"Authorization": f"OAuth {TOLOKA_TOKEN}"}
        return self.session.request(
            method, f"{self.url}/api/v1{path}", params=params, headers=headers, timeout=5
        )


@pytest.fixture(scope="module")
def emulator() -> Iterator[Process]:
    command = [
        sys.executable, "-m", "airflow_provider_toloka.emulator", "--port", "0", "--token", TOLOKA_TOKEN,
        "--control-token", CONTROL_TOKEN, "--operation-duration", "0",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    printed = [process.stdout.readline() for _ in range(3)]
    url = printed[0].split("serving ", 1)[1].split("/api/v1", 1)[0]
    assert printed[2].startswith(f"Control API: {url}/_emulator/")
    running = Process(process, url)
    try:
        yield running
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
        # The control token is never printed or logged.
        assert CONTROL_TOKEN not in "".join(printed) + out + err


@pytest.fixture
def emu(emulator: Process) -> Process:
    assert emulator.control("POST", "reset").json() == {"ok": True}
    seed = {
        "projects": [{"id": "1"}],
        "pools": [
            {"id": "10", "project_id": "1"},
            {"id": "11", "project_id": "1", "last_rejection": "2026-01-01T00:00:00"},
        ],
        "trainings": [{"id": "20", "project_id": "1", "linked_pool_ids": ["10"]}],
    }
    assert emulator.control("POST", "seed", seed).status_code == 200
    return emulator


def test_seed_then_the_toloka_api_serves_it(emu):
    pool = emu.api("GET", "/pools/10").json()

    assert pool["status"] == "CLOSED"
    assert pool["quality_control"]["training_requirement"]["training_pool_id"] == "20"


def test_reset_empties_the_world(emu):
    emu.control("POST", "reset")

    assert emu.api("GET", "/pools/10").status_code == 404


def test_without_the_control_token_nothing_changes(emu):
    for token in (None, "wrong", TOLOKA_TOKEN):
        response = emu.control("POST", "reset", token=token)
        assert response.status_code == 401
        assert CONTROL_TOKEN not in response.text
    assert emu.api("GET", "/pools/10").status_code == 200


def test_faults_are_injected_and_cleared(emu):
    assert emu.control(
        "POST", "faults", {"kind": "503", "count": 2, "path": "/pools/", "retry_after": 0.2}
    ).ok

    first = emu.api("GET", "/pools/10")
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "1"  # whole seconds only
    emu.control("DELETE", "faults")
    assert emu.api("GET", "/pools/10").status_code == 200


def test_a_bad_control_request_is_refused_naming_what_is_wrong(emu):
    unknown_kind = emu.control("POST", "faults", {"kind": "418"})
    unknown_key = emu.control("POST", "faults", {"kind": "500", "colour": "red"})
    bad_setting = emu.control("PUT", "settings", {"latency": -1})

    assert unknown_kind.status_code == unknown_key.status_code == bad_setting.status_code == 400
    assert "418" in unknown_kind.json()["error"]
    assert "colour" in unknown_key.json()["error"]
    assert "latency" in bad_setting.json()["error"]


def test_fail_next_makes_the_next_archive_fail_with_a_log_item(emu):
    emu.control("POST", "fail_next", {"kind": "pool", "object_id": "10", "details": {"reason": "x"}})

    operation = emu.api("POST", "/pools/10/archive").json()

    assert operation["status"] == "FAIL"
    assert emu.api("GET", f"/operations/{operation['id']}/log").json()[0]["output"] == {"reason": "x"}


def test_moving_the_clock_ends_a_rejection_window(emu):
    before = dt.datetime.fromisoformat(emu.control("GET", "clock").json()["now"])
    emu.control(
        "POST", "seed", {"pools": [{"id": "12", "project_id": "1", "last_rejection": before.isoformat()}]}
    )
    assert emu.api("POST", "/pools/12/archive").json()["code"] == "THERE_IS_REJECTED_ASSIGNMENT"

    after = emu.control("POST", "clock/advance", {"seconds": 9 * 86400 + 1}).json()["now"]

    assert dt.datetime.fromisoformat(after) - before >= dt.timedelta(days=9)
    assert emu.api("POST", "/pools/12/archive").status_code == 202


def test_the_request_log_holds_toloka_requests_only(emu):
    emu.control("DELETE", "requests")
    emu.api("GET", "/pools/10")
    emu.api("GET", "/pools/99")

    items = emu.control("GET", "requests").json()["items"]

    assert [(r["method"], r["path"], r["status"]) for r in items] == [
        ("GET", "/api/v1/pools/10", 200),
        ("GET", "/api/v1/pools/99", 404),
    ]


def test_settings_change_what_the_api_does(emu):
    settings = emu.control("PUT", "settings", {"operation_duration": 60, "rate_limit": 1000}).json()

    assert settings == {"rate_limit": 1000, "latency": 0.0, "operation_duration": 60, "accounts": []}
    assert emu.api("POST", "/pools/10/archive").json()["status"] == "PENDING"
    assert (
        emu.control("PUT", "settings", {"operation_duration": 0, "rate_limit": None}).json()["rate_limit"]
        is None
    )
    assert json.loads(emu.control("GET", "settings").text)["operation_duration"] == 0


def test_429s_name_the_quota_that_ran_out(emu):
    assert emu.control("POST", "faults", {"kind": "429", "quota": "HOUR", "retry_after": 1800}).ok
    answer = emu.api("GET", "/pools/10")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "1800"
    body = answer.json()
    assert (body["code"], body["payload"]) == ("TOO_MANY_REQUESTS", {"interval": "HOUR"})
    assert body["request_id"]
    # Without a quota, the per-second limit's 429 names none, as before.
    assert emu.control("POST", "faults", {"kind": "429"}).ok
    assert "payload" not in emu.api("GET", "/pools/10").json()
    for bad in ({"kind": "429", "quota": "WEEK"}, {"kind": "503", "quota": "HOUR"}):
        refused = emu.control("POST", "faults", bad)
        assert refused.status_code == 400
        assert "quota=" in refused.json()["error"]


def test_only_accounts_the_user_belongs_to_can_be_acted_under(emu):
    def get_as(account: str | None) -> requests.Response:
        headers = {"Authorization": f"OAuth {TOLOKA_TOKEN}"}
        if account is not None:
            headers["X-Act-Under-Account-ID"] = account
        return emu.session.get(f"{emu.url}/api/v1/pools/10", headers=headers, timeout=5)

    assert emu.control("PUT", "settings", {"accounts": ["team-a"]}).json()["accounts"] == ["team-a"]
    try:
        assert get_as(None).status_code == 200
        assert get_as("team-a").status_code == 200
        refused = get_as("team-b")
        assert refused.status_code == 403
        assert refused.json()["code"] == "ACCESS_DENIED"
        assert "team-b" in refused.json()["message"]
        logged = emu.control("GET", "requests").json()["items"]
        assert [item["account"] for item in logged] == [None, "team-a", "team-b"]
        assert emu.control("PUT", "settings", {"accounts": "team-a"}).status_code == 400
    finally:
        emu.control("PUT", "settings", {"accounts": []})


def test_the_request_log_tells_the_providers_requests_from_others(toloka_emulator, monkeypatch):
    import requests

    from airflow_provider_toloka.hooks.toloka import TolokaHook

    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", toloka_emulator.airflow_conn_json())
    toloka_emulator.add_project("1")
    TolokaHook().get_project("1")
    requests.get(f"{toloka_emulator.url}/api/v1/projects/1", headers={"User-Agent": "a-test/1"}, timeout=10)
    provider, other = (record.user_agent for record in toloka_emulator.requests)
    assert str(provider).startswith("airflow-provider-toloka/")
    assert other == "a-test/1"
