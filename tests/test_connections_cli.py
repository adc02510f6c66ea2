"""``airflow connections test`` (the UI's Test button) against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys


def run_test(conn_json: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_CONN_TOLOKA_CLI": conn_json, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    return subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "toloka_cli"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_good_token_passes(toloka_emulator):
    result = run_test(toloka_emulator.airflow_conn_json())
    assert "Connection success!" in result.stdout, result.stdout + result.stderr


def test_a_bad_token_shows_tolokas_refusal_and_never_the_token(toloka_emulator):
    conn = toloka_emulator.airflow_conn_json().replace(toloka_emulator.token, "wrong-token-123")
    result = run_test(conn)
    output = result.stdout + result.stderr
    assert "Connection failed!" in output
    assert "401" in output
    assert "wrong-token-123" not in output
