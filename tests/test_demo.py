"""``./dev demo`` end to end: every example DAG through ``airflow dags test`` against a seeded emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs every example DAG in `airflow dags test` subprocesses (~140 s): the whole suite runs it on one
# (Airflow, Python) pair; the matrix cells run the same DAGs in-process (tests/test_example_dags.py).
pytestmark = pytest.mark.demo

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "example_dags"


def test_demo_runs_every_example_and_reports_each_object():
    # The demo makes its own AIRFLOW_HOME and connection: none of the test session's may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    demo = subprocess.run(
        [sys.executable, "-m", "tests.demo", "--dags", str(EXAMPLES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    runs = demo.stdout.split("DAG runs:")[1].split("Toloka objects")[0]
    for dag_file in EXAMPLES.glob("example_*.py"):
        assert f"{dag_file.stem} " in runs
    assert "FAILED" not in runs
    assert "project 1001     ACTIVE     ARCHIVED" in demo.stdout
    assert "pool 2204        OPEN       ARCHIVED" in demo.stdout
    # Housekeeping archives the projects finished months ago and leaves the open and the recent one.
    assert "project 1101     ACTIVE     ARCHIVED" in demo.stdout
    assert "project 1103     ACTIVE     ACTIVE" in demo.stdout
    assert "project 1104     ACTIVE     ACTIVE" in demo.stdout


def test_the_housekeeping_example_runs_alone_in_its_place_and_the_others_two_at_a_time(toloka_conn):
    from demo import _waves  # tests/demo.py: pyproject.toml puts tests/ on the path

    # Housekeeping reads the whole account: beside another example it would find objects half archived.
    # (The asset example reads toloka_default when parsed: toloka_conn provides it.)
    assert _waves(str(EXAMPLES)) == [
        [
            "example_toloka_archive",
            "example_toloka_asset",
            "example_toloka_cascade",
            "example_toloka_deferrable",
        ],
        ["example_toloka_housekeeping"],
        ["example_toloka_sensor", "example_toloka_wait_until_archivable"],
    ]


def test_jobs_below_one_is_refused_before_anything_starts(capsys):
    from demo import main  # tests/demo.py: pyproject.toml puts tests/ on the path

    with pytest.raises(SystemExit) as refused:
        main(["--jobs", "0"])
    assert refused.value.code == 2
    assert "--jobs must be 1 or more, got 0" in capsys.readouterr().err


def test_the_demo_is_not_in_the_package():
    # It reads the repository's example_dags/, which the wheel does not ship.
    import airflow_provider_toloka.emulator as emulator

    assert not (Path(emulator.__file__).parent / "demo.py").exists()
